# The worker nodes act as an instance principal: the cluster autoscaler resizes the node pool, and the tcloud
# worker (TCLOUD_OCI_AUTH=instance_principal) writes and deletes backups in the backup bucket only.

resource "oci_identity_dynamic_group" "nodes" {
  provider       = oci.home
  compartment_id = var.tenancy_ocid
  name           = "${var.name}-oke-nodes"
  description    = "Worker nodes of the ${var.name} OKE cluster"
  matching_rule  = "ALL {instance.compartment.id = '${var.compartment_ocid}'}"
}

resource "oci_identity_policy" "nodes" {
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.name}-oke-nodes"
  description    = "Cluster autoscaler and platform backups"
  statements = [
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to manage cluster-node-pools in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to manage instance-family in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to use subnets in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to read virtual-network-family in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to use vnics in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to inspect compartments in compartment id ${var.compartment_ocid}",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to read buckets in compartment id ${var.compartment_ocid} where target.bucket.name = '${var.backup_bucket_name}'",
    "Allow dynamic-group ${oci_identity_dynamic_group.nodes.name} to manage objects in compartment id ${var.compartment_ocid} where target.bucket.name = '${var.backup_bucket_name}'",
  ]
}

# Object Storage itself must be allowed to delete objects for the lifecycle rule to run.
resource "oci_identity_policy" "object_lifecycle" {
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.name}-object-lifecycle"
  description    = "Lets Object Storage apply the backup bucket's lifecycle rule"
  statements = [
    "Allow service objectstorage-${var.region} to manage object-family in compartment id ${var.compartment_ocid}",
  ]
}
