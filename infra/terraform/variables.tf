variable "tenancy_ocid" {
  description = "OCID of the tenancy (the budget is created at tenancy level and targets the compartment)."
  type        = string
}

variable "compartment_ocid" {
  description = "OCID of the compartment that holds every tcloud resource."
  type        = string
}

variable "region" {
  description = "OCI region, e.g. eu-frankfurt-1."
  type        = string
}

variable "home_region" {
  description = "The tenancy's home region for identity resources; empty means var.region."
  type        = string
  default     = ""
}

variable "oci_profile" {
  description = "Profile of the OCI CLI configuration file used by the provider."
  type        = string
  default     = "DEFAULT"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "tcloud"
}

variable "vcn_cidr" {
  description = "Address range of the VCN."
  type        = string
  default     = "10.20.0.0/16"
}

variable "api_allowed_cidrs" {
  description = "Who may reach the Kubernetes API endpoint (CI runners and operators)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kubernetes_version" {
  description = "OKE Kubernetes version; the Helm chart's manifests are validated against the same minor version."
  type        = string
  default     = "v1.33.1"
}

variable "node_shape" {
  description = "Compute shape of the worker nodes."
  type        = string
  default     = "VM.Standard.E4.Flex"
}

variable "node_ocpus" {
  description = "OCPUs per worker node."
  type        = number
  default     = 2
}

variable "node_memory_gbs" {
  description = "Memory per worker node, in GB."
  type        = number
  default     = 16
}

variable "node_pool_min_size" {
  description = "Fewest worker nodes the cluster autoscaler keeps."
  type        = number
  default     = 1

  validation {
    condition     = var.node_pool_min_size >= 1
    error_message = "node_pool_min_size must be at least 1."
  }
}

variable "node_pool_max_size" {
  description = "Most worker nodes the cluster autoscaler adds (bounded by the budget)."
  type        = number
  default     = 3

  validation {
    condition     = var.node_pool_max_size >= 1 && var.node_pool_max_size <= 3
    error_message = "node_pool_max_size must be between 1 and 3 to stay within the monthly budget."
  }
}

variable "backup_bucket_name" {
  description = "Object Storage bucket of the daily pg_dump backups (TCLOUD_OCI_BUCKET)."
  type        = string
  default     = "tcloud-backups"
}

variable "backup_lifecycle_days" {
  description = "Object Storage deletes backups older than this: a second line of retention behind the platform's own 7-day retention."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_lifecycle_days > 7
    error_message = "backup_lifecycle_days must exceed the platform's 7-day retention, or it would delete backups the platform still keeps."
  }
}

variable "monthly_budget_usd" {
  description = "Monthly budget of the compartment, in the tenancy's currency (USD)."
  type        = number
  default     = 290
}

variable "budget_alert_thresholds" {
  description = "Percentages of the monthly budget, in actual spend, at which an alert e-mail is sent."
  type        = list(number)
  default     = [80, 95, 100]
}

variable "budget_alert_recipients" {
  description = "E-mail addresses that receive the budget alerts."
  type        = list(string)
}
