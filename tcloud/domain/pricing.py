"""Pricing: the price book (data files in ``tcloud/domain/pricebook/``) applied to one account-month of usage.

Pure functions, ``Decimal`` only: no float ever touches money.

The rounding rule (the only one): every invoice line's amount is computed exactly in Decimal and then
rounded **once**, to integer cents, with ROUND_HALF_UP (``line_cents``). The invoice total is the sum of the
rounded lines. The plan-minimum top-up line is the prorated minimum rounded the same way, minus the sum of
the rounded usage lines, so it needs no rounding of its own.

Other rules:
- Actions are tiered over the account's monthly total across all its namespaces. Included actions are the
  first ones of the month: the actions line is ``tiered(total) - tiered(min(total, included))``.
- Storage is billed per GB-hour (GB = 10^9 bytes) beyond the included GB-hours.
- A partial month (account created during the period) prorates the minimum and every allocation by day:
  ``full * days_billed / days_in_period``; included storage GB-hours are ``GB * 24 * days_billed``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from importlib import resources
from typing import Any

from tcloud.domain.plans import PLANS, Plan

MILLION = Decimal(1_000_000)
BYTES_PER_GB = Decimal(10) ** 9
HOURS_PER_DAY = 24
_PRECISION = 60



def dollars(cents: int) -> str:
    """Cents as a dollar string, e.g. 52500 -> "525.00" (exact; no float)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"

@dataclass(frozen=True)
class Tier:
    """One actions tier: the cumulative monthly total where it ends (None: no end) and its price."""

    up_to: Decimal | None
    per_million: Decimal


@dataclass(frozen=True)
class PlanTerms:
    """A plan's monthly minimum spend and included allocations for a whole month."""

    monthly_minimum: Decimal
    included_actions: Decimal
    included_active_gb: Decimal
    included_retained_gb: Decimal


@dataclass(frozen=True)
class PriceBook:
    """One version of the price book."""

    version: str
    effective_from: date
    currency: str
    action_tiers: tuple[Tier, ...]
    active_per_gb_hour: Decimal
    retained_per_gb_hour: Decimal
    plans: dict[str, PlanTerms]


@dataclass(frozen=True)
class Usage:
    """An account's billable usage over a period, as summed from the ledger."""

    actions: Decimal = Decimal(0)
    active_byte_hours: Decimal = Decimal(0)
    retained_byte_hours: Decimal = Decimal(0)


@dataclass(frozen=True)
class PricedLine:
    """One invoice line: ``amount_cents`` is ``exact_amount`` (dollars) rounded once."""

    kind: str  # actions | active_storage | retained_storage | minimum
    description: str
    quantity: Decimal
    unit: str
    exact_amount: Decimal
    amount_cents: int
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PricedInvoice:
    """The priced lines of one account-month and their total."""

    price_book_version: str
    currency: str
    plan: str
    days_billed: int
    days_in_period: int
    lines: tuple[PricedLine, ...]

    @property
    def total_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)


def line_cents(amount: Decimal) -> int:
    """Round an exact dollar amount to integer cents, half up: the one rounding of an invoice line."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _dec(value: Any) -> Decimal:
    if isinstance(value, float):  # tomllib is read with parse_float=Decimal; a float here is a bug
        raise TypeError("price book values must be read as Decimal")
    return Decimal(value)


def parse_price_book(text: str) -> PriceBook:
    """Parse one price book file (TOML, numbers read as Decimal) and check it is well formed.

    Raises:
        ValueError: when tiers are not increasing, a price is negative or a plan is missing.
    """
    raw = tomllib.loads(text, parse_float=Decimal)
    tiers = tuple(Tier(None if "up_to" not in t else _dec(t["up_to"]), _dec(t["per_million"]))
                  for t in raw["actions"]["tiers"])
    bounds = [t.up_to for t in tiers]
    if not tiers or bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError("every actions tier but the last needs up_to; the last has none")
    finite = [b for b in bounds if b is not None]
    if finite != sorted(set(finite)) or any(b <= 0 for b in finite) or any(t.per_million < 0 for t in tiers):
        raise ValueError("actions tiers must increase and prices must not be negative")
    plans = {name: PlanTerms(_dec(p["monthly_minimum"]), _dec(p["included_actions"]),
                             _dec(p["included_active_gb"]), _dec(p["included_retained_gb"]))
             for name, p in raw["plans"].items()}
    missing = set(PLANS) - set(plans)
    if missing:
        raise ValueError(f"price book lacks plans {sorted(missing)}")
    return PriceBook(version=str(raw["version"]), effective_from=raw["effective_from"],
                     currency=str(raw.get("currency", "usd")), action_tiers=tiers,
                     active_per_gb_hour=_dec(raw["storage"]["active_per_gb_hour"]),
                     retained_per_gb_hour=_dec(raw["storage"]["retained_per_gb_hour"]), plans=plans)


@lru_cache(maxsize=1)
def price_books() -> tuple[PriceBook, ...]:
    """Every version in ``tcloud/domain/pricebook/``, oldest first."""
    folder = resources.files("tcloud.domain") / "pricebook"
    books = [parse_price_book((folder / p.name).read_text(encoding="utf-8"))
             for p in folder.iterdir() if p.name.endswith(".toml")]
    return tuple(sorted(books, key=lambda b: b.effective_from))


def price_book_for(day: date, books: tuple[PriceBook, ...] | None = None) -> PriceBook:
    """The version in force on ``day`` (the latest whose ``effective_from`` is not after it).

    Raises:
        LookupError: when no version is in force yet.
    """
    candidates = [b for b in (books or price_books()) if b.effective_from <= day]
    if not candidates:
        raise LookupError(f"no price book in force on {day}")
    return candidates[-1]


def tiered_actions_amount(tiers: tuple[Tier, ...], actions: Decimal) -> Decimal:
    """The exact dollar price of the first ``actions`` actions of a month, over the tiers."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        amount = Decimal(0)
        lower = Decimal(0)
        for tier in tiers:
            upper = actions if tier.up_to is None else min(actions, tier.up_to)
            if upper > lower:
                amount += (upper - lower) * tier.per_million / MILLION
            if tier.up_to is None or actions <= tier.up_to:
                break
            lower = tier.up_to
        return amount


def prorate(full: Decimal, days_billed: int, days_in_period: int) -> Decimal:
    """``full`` scaled to ``days_billed`` of ``days_in_period`` days, exactly."""
    if not 0 <= days_billed <= days_in_period or days_in_period <= 0:
        raise ValueError("days_billed must be within the period")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return full * days_billed / days_in_period


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")


def price_usage(book: PriceBook, plan: Plan | str, usage: Usage, *, days_billed: int,
                days_in_period: int) -> PricedInvoice:
    """Price one account-month: three usage lines, plus a top-up line when below the plan minimum.

    Args:
        book: the price book version in force for the period.
        plan: the account's plan.
        usage: billable usage summed from the ledger.
        days_billed: days of the period the account existed (its allocations are prorated to these).
        days_in_period: days in the calendar month.
    """
    terms = book.plans[plan]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        included_actions = prorate(terms.included_actions, days_billed, days_in_period)
        hours = Decimal(HOURS_PER_DAY * days_billed)
        included_active = terms.included_active_gb * hours
        included_retained = terms.included_retained_gb * hours
        actions_amount = (tiered_actions_amount(book.action_tiers, usage.actions)
                          - tiered_actions_amount(book.action_tiers, min(usage.actions, included_actions)))
        active_gbh = usage.active_byte_hours / BYTES_PER_GB
        retained_gbh = usage.retained_byte_hours / BYTES_PER_GB
        active_amount = max(Decimal(0), active_gbh - included_active) * book.active_per_gb_hour
        retained_amount = max(Decimal(0), retained_gbh - included_retained) * book.retained_per_gb_hour
        lines = [
            PricedLine("actions", f"Actions: {_fmt(usage.actions)} ({_fmt(included_actions)} included)",
                       usage.actions, "actions", actions_amount, line_cents(actions_amount),
                       {"included": _fmt(included_actions)}),
            PricedLine("active_storage",
                       f"Active storage: {_fmt(active_gbh)} GB-hours ({_fmt(included_active)} included)",
                       active_gbh, "GB-hours", active_amount, line_cents(active_amount),
                       {"included": _fmt(included_active), "rate": _fmt(book.active_per_gb_hour)}),
            PricedLine("retained_storage",
                       f"Retained storage: {_fmt(retained_gbh)} GB-hours ({_fmt(included_retained)} included)",
                       retained_gbh, "GB-hours", retained_amount, line_cents(retained_amount),
                       {"included": _fmt(included_retained), "rate": _fmt(book.retained_per_gb_hour)}),
        ]
        minimum = prorate(terms.monthly_minimum, days_billed, days_in_period)
        minimum_cents = line_cents(minimum)
        usage_cents = sum(line.amount_cents for line in lines)
        if usage_cents < minimum_cents:
            top_up = Decimal(minimum_cents - usage_cents) / 100
            lines.append(PricedLine("minimum", f"Plan {plan} monthly minimum ${_fmt(minimum)}: top-up",
                                    Decimal(1), "month", top_up, minimum_cents - usage_cents,
                                    {"minimum": _fmt(minimum)}))
    return PricedInvoice(price_book_version=book.version, currency=book.currency, plan=str(plan),
                         days_billed=days_billed, days_in_period=days_in_period, lines=tuple(lines))
