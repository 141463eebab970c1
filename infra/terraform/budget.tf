# A monthly budget on the compartment with e-mail alerts on actual spend at 80%, 95% and 100%.

resource "oci_budget_budget" "monthly" {
  compartment_id = var.tenancy_ocid
  display_name   = "${var.name}-monthly"
  description    = "tcloud production: OKE, nodes, load balancer, storage"
  amount         = var.monthly_budget_usd
  reset_period   = "MONTHLY"
  target_type    = "COMPARTMENT"
  targets        = [var.compartment_ocid]
}

resource "oci_budget_alert_rule" "spend" {
  for_each = toset([for t in var.budget_alert_thresholds : tostring(t)])

  budget_id      = oci_budget_budget.monthly.id
  display_name   = "${var.name}-spend-${each.value}pct"
  type           = "ACTUAL"
  threshold_type = "PERCENTAGE"
  threshold      = tonumber(each.value)
  recipients     = join(",", var.budget_alert_recipients)
  message        = "tcloud has spent ${each.value}% of its ${var.monthly_budget_usd} USD monthly budget."
}
