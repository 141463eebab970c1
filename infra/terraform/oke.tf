# The OKE cluster (enhanced: managed add-ons, among them the cluster autoscaler) and one node pool that the
# autoscaler keeps between var.node_pool_min_size and var.node_pool_max_size nodes (1–3).

data "oci_identity_availability_domains" "all" {
  compartment_id = var.tenancy_ocid
}

data "oci_containerengine_node_pool_option" "images" {
  node_pool_option_id = "all"
  compartment_id      = var.compartment_ocid
}

locals {
  kubernetes_minor = trimprefix(var.kubernetes_version, "v")
  # The newest Oracle Linux OKE image for the cluster's version on x86 without GPU drivers.
  node_image_id = [
    for source in data.oci_containerengine_node_pool_option.images.sources : source.image_id
    if length(regexall("Oracle-Linux-8.*-OKE-${local.kubernetes_minor}", source.source_name)) > 0
    && length(regexall("aarch64|GPU", source.source_name)) == 0
  ][0]
}

resource "oci_containerengine_cluster" "main" {
  compartment_id     = var.compartment_ocid
  name               = "${var.name}-oke"
  kubernetes_version = var.kubernetes_version
  vcn_id             = oci_core_vcn.main.id
  type               = "ENHANCED_CLUSTER"

  cluster_pod_network_options {
    cni_type = "FLANNEL_OVERLAY"
  }

  endpoint_config {
    is_public_ip_enabled = true
    subnet_id            = oci_core_subnet.api.id
  }

  options {
    service_lb_subnet_ids = [oci_core_subnet.lb.id]

    kubernetes_network_config {
      pods_cidr     = "10.244.0.0/16"
      services_cidr = "10.96.0.0/16"
    }
  }
}

resource "oci_containerengine_node_pool" "main" {
  compartment_id     = var.compartment_ocid
  cluster_id         = oci_containerengine_cluster.main.id
  name               = "${var.name}-pool"
  kubernetes_version = var.kubernetes_version
  node_shape         = var.node_shape

  node_shape_config {
    ocpus         = var.node_ocpus
    memory_in_gbs = var.node_memory_gbs
  }

  node_source_details {
    source_type             = "IMAGE"
    image_id                = local.node_image_id
    boot_volume_size_in_gbs = 50
  }

  node_config_details {
    # The initial size; from then on the cluster autoscaler owns it (hence ignore_changes below).
    size = var.node_pool_min_size

    dynamic "placement_configs" {
      for_each = data.oci_identity_availability_domains.all.availability_domains
      content {
        availability_domain = placement_configs.value.name
        subnet_id           = oci_core_subnet.nodes.id
      }
    }
  }

  initial_node_labels {
    key   = "tcloud.io/pool"
    value = "main"
  }

  lifecycle {
    ignore_changes = [node_config_details[0].size]
  }
}

# OKE's managed Cluster Autoscaler add-on: "min:max:node pool OCID", authenticating as the nodes' instance
# principal (see iam.tf).
resource "oci_containerengine_addon" "cluster_autoscaler" {
  cluster_id                       = oci_containerengine_cluster.main.id
  addon_name                       = "ClusterAutoscaler"
  remove_addon_resources_on_delete = true

  configurations {
    key   = "authType"
    value = "instance"
  }

  configurations {
    key   = "nodes"
    value = "${var.node_pool_min_size}:${var.node_pool_max_size}:${oci_containerengine_node_pool.main.id}"
  }
}
