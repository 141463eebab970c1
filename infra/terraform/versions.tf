terraform {
  required_version = ">= 1.5.0"

  required_providers {
    oci = {
      source  = "oracle/oci"
      version = "~> 7.0"
    }
  }
}

# Credentials come from the OCI CLI configuration (~/.oci/config, profile var.oci_profile) or from the
# provider's TF_VAR_/OCI_ environment variables; nothing secret is written in these files.
provider "oci" {
  region              = var.region
  config_file_profile = var.oci_profile
}

# Identity resources (dynamic groups, policies) live in the tenancy's home region.
provider "oci" {
  alias               = "home"
  region              = var.home_region != "" ? var.home_region : var.region
  config_file_profile = var.oci_profile
}
