"""Request and response bodies of the billing routes (customer and operator)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from tcloud.domain.pricing import dollars
from tcloud.services.invoicing import AccountMonth
from workflows.billing_invoice import invoice_workflow_id

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class InvoiceLineOut(BaseModel):
    line_no: int
    kind: str
    description: str
    quantity: str
    unit: str
    amount_cents: int
    amount: str
    ledger_rows: int | None = None


class InvoiceOut(BaseModel):
    id: str
    account_id: str
    period: str
    status: str
    plan: str
    price_book_version: str
    currency: str
    total_cents: int
    total: str
    hosted_invoice_url: str | None
    stripe_invoice_id: str | None
    payment_attempts: int
    last_payment_error: str | None
    workflow_id: str | None = Field(default=None, description="operators only: the workflow to open in the "
                                    "Temporal UI for it, the batch that made it or, once a payment failed, its "
                                    "account's own (a batch is named after another account: never shown to customers)")
    covers_from: datetime = Field(description="the first hour this invoice bills")
    covers_to: datetime = Field(description="the hour after the last it bills: the period's end, or the end of "
                                            "the hour the account closed in (its final invoice)")
    created_at: datetime
    paid_at: datetime | None
    lines: list[InvoiceLineOut] | None = None


class InvoiceList(BaseModel):
    invoices: list[InvoiceOut]


class UpcomingOut(BaseModel):
    """The month-to-date estimate: the same pricing as the real invoice, over the ledger so far."""

    period: str
    as_of: datetime
    plan: str
    price_book_version: str
    currency: str
    total_cents: int
    total: str
    lines: list[InvoiceLineOut]


# Plain ASCII addresses only: the address goes into a mail header.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
ALERT_EMAIL_PATTERN = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"


class SpendAlerts(BaseModel):
    """The spend-alert settings, replaced whole by PUT: a field left out is cleared."""

    model_config = ConfigDict(extra="forbid")
    thresholds_cents: list[int] = Field(max_length=20, description="notify once per period at each threshold")
    webhook_url: str | None = Field(default=None, max_length=2048,
                                    description="POST each alert here, signed (Tcloud-Signature); null: no webhook")
    email: str | None = Field(default=None, max_length=254, pattern=ALERT_EMAIL_PATTERN,
                              description="send each alert to this address; null: no email")
    rotate_webhook_secret: bool = Field(default=False, description="issue a new webhook signing secret")


class AlertDeliveryOut(BaseModel):
    channel: str
    target: str
    state: str  # pending | delivered | failed
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class AlertNotificationOut(BaseModel):
    period: str
    threshold_cents: int
    estimate_cents: int
    notified_at: datetime
    deliveries: list[AlertDeliveryOut]


class SpendAlertsOut(BaseModel):
    thresholds_cents: list[int]
    webhook_url: str | None
    webhook_secret: str | None = Field(description="the HMAC key that signs webhook deliveries")
    email: str | None
    notifications: list[AlertNotificationOut] = Field(description="the latest notifications, newest first")


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=PERIOD_PATTERN, description="a month that has ended, YYYY-MM")
    rerun: bool = Field(default=False, description="run again after a finished run: only accounts without an "
                                                   "invoice workflow, or whose one failed, are invoiced")


class RunOut(BaseModel):
    period: str
    workflow_id: str
    status: str
    phase: str | None = None
    missing_hours: int | None = None
    in_flight: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    invoices_by_status: dict[str, int] = Field(default_factory=dict)
    live: bool = Field(default=False, description="phase and counts come from the running workflow itself "
                                                  "(else from what the run last recorded)")
    updated_at: datetime | None = Field(default=None, description="when the run last recorded its state")


def _workflow_of(row: asyncpg.Record) -> str:
    """Dunning (a failed payment and whatever follows) runs in the account's own invoice workflow; the first
    attempt ran where the invoice was made (a billing batch, or that same workflow for older invoices)."""
    own = invoice_workflow_id(row["account_id"], row["period"])
    if row["status"] in ("past_due", "written_off") or row["payment_attempts"] > 1:
        return own
    return str(row["workflow_id"] or own)


def invoice_out(row: asyncpg.Record, lines: list[asyncpg.Record] | None = None, *,
                for_operator: bool = False) -> InvoiceOut:
    return InvoiceOut(workflow_id=_workflow_of(row) if for_operator else None,
        id=row["id"], account_id=row["account_id"], period=row["period"], status=row["status"], plan=row["plan"],
        price_book_version=row["price_book_version"], currency=row["currency"], total_cents=row["total_cents"],
        total=dollars(row["total_cents"]), hosted_invoice_url=row["hosted_invoice_url"],
        stripe_invoice_id=row["stripe_invoice_id"], payment_attempts=row["payment_attempts"],
        last_payment_error=row["last_payment_error"], covers_from=row["period_start"], covers_to=row["period_end"],
        created_at=row["created_at"], paid_at=row["paid_at"],
        lines=None if lines is None else [
            InvoiceLineOut(line_no=r["line_no"], kind=r["kind"], description=r["description"],
                           quantity=format(r["quantity"], "f"), unit=r["unit"], amount_cents=r["amount_cents"],
                           amount=dollars(r["amount_cents"]), ledger_rows=r["ledger_rows"]) for r in lines])


def upcoming_out(month: AccountMonth) -> UpcomingOut:
    priced = month.priced
    rows_by_kind: dict[str, int] = {}
    for s in month.sums:
        rows_by_kind[s.metric] = rows_by_kind.get(s.metric, 0) + s.rows
    return UpcomingOut(
        period=month.period, as_of=month.hour_to, plan=priced.plan, price_book_version=priced.price_book_version,
        currency=priced.currency, total_cents=priced.total_cents, total=dollars(priced.total_cents),
        lines=[InvoiceLineOut(line_no=n, kind=line.kind, description=line.description,
                              quantity=format(line.quantity, "f"), unit=line.unit, amount_cents=line.amount_cents,
                              amount=dollars(line.amount_cents), ledger_rows=rows_by_kind.get(line.kind))
               for n, line in enumerate(priced.lines, start=1)])
