# The bucket of the daily pg_dump backups. The platform deletes backups past its 7-day retention itself; the
# lifecycle rule deletes anything older than var.backup_lifecycle_days in case that ever stops working.

data "oci_objectstorage_namespace" "this" {
  compartment_id = var.tenancy_ocid
}

resource "oci_objectstorage_bucket" "backups" {
  compartment_id = var.compartment_ocid
  namespace      = data.oci_objectstorage_namespace.this.namespace
  name           = var.backup_bucket_name
  access_type    = "NoPublicAccess"
  storage_tier   = "Standard"
  versioning     = "Disabled"
}

resource "oci_objectstorage_object_lifecycle_policy" "backups" {
  namespace = data.oci_objectstorage_namespace.this.namespace
  bucket    = oci_objectstorage_bucket.backups.name

  rules {
    name        = "delete-backups-after-${var.backup_lifecycle_days}-days"
    action      = "DELETE"
    target      = "objects"
    is_enabled  = true
    time_amount = var.backup_lifecycle_days
    time_unit   = "DAYS"
  }

  depends_on = [oci_identity_policy.object_lifecycle]
}
