"""The states things go through, as types: the same words as the CHECK constraints of the migrations and the
workflows' status queries, so a misspelt state is a type error instead of a row that never matches."""

from __future__ import annotations

from typing import Literal

AccountStatus = Literal["active", "suspended", "closing", "closed"]
NamespaceState = Literal["provisioning", "active", "updating", "deleting", "deleted", "failed"]
InvoiceStatus = Literal["draft", "zero", "open", "paid", "past_due", "written_off"]
# What a billing/<account>/<period> workflow reports: the invoice's status while it is being made and paid.
InvoiceWorkflowState = Literal["invoicing", "collecting", "zero", "paid", "past_due", "written_off", "failed"]
# The billing_runs table's status: the run's workflow as last reported by the run itself.
BillingRunStatusName = Literal["running", "completed", "cancelled", "failed"]
BillingRunPhase = Literal["starting", "waiting_for_period_end", "waiting_for_usage", "invoicing", "draining", "done"]
DeliveryChannel = Literal["webhook", "email"]
DeliveryState = Literal["pending", "delivered", "failed"]
Collector = Literal["actions", "storage"]
