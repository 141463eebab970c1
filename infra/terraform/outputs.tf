output "cluster_id" {
  description = "OCID of the OKE cluster."
  value       = oci_containerengine_cluster.main.id
}

output "kubeconfig_command" {
  description = "Writes a kubeconfig for the cluster (what deploy-oke.sh runs after apply)."
  value       = "oci ce cluster create-kubeconfig --cluster-id ${oci_containerengine_cluster.main.id} --region ${var.region} --token-version 2.0.0 --kube-endpoint PUBLIC_ENDPOINT --file $HOME/.kube/config"
}

output "node_pool_id" {
  description = "OCID of the autoscaled node pool."
  value       = oci_containerengine_node_pool.main.id
}

output "node_pool_bounds" {
  description = "Fewest and most nodes of the pool."
  value       = { min = var.node_pool_min_size, max = var.node_pool_max_size }
}

output "objectstorage_namespace" {
  description = "Object Storage namespace (TCLOUD_OCI_NAMESPACE)."
  value       = data.oci_objectstorage_namespace.this.namespace
}

output "backup_bucket" {
  description = "Backup bucket name (TCLOUD_OCI_BUCKET)."
  value       = oci_objectstorage_bucket.backups.name
}

output "region" {
  description = "Region (TCLOUD_OCI_REGION)."
  value       = var.region
}

output "budget_id" {
  description = "OCID of the monthly budget."
  value       = oci_budget_budget.monthly.id
}

output "vcn_id" {
  description = "OCID of the VCN."
  value       = oci_core_vcn.main.id
}
