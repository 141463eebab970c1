"""Property tests of the pricing rules (tcloud.domain.pricing) against the shipped price book."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcloud.domain.billing_period import days_billed, days_in_period, period_bounds, previous_period
from tcloud.domain.pricing import (
    Usage,
    line_cents,
    parse_price_book,
    price_book_for,
    price_books,
    price_usage,
    prorate,
    tiered_actions_amount,
)

BOOK = price_book_for(date(2026, 10, 1))
TIERS = BOOK.action_tiers
actions_st = st.integers(min_value=0, max_value=300_000_000).map(Decimal)
bytes_st = st.integers(min_value=0, max_value=10**16).map(Decimal)


def payg(actions: Decimal = Decimal(0), active: Decimal = Decimal(0), retained: Decimal = Decimal(0),
         days: int = 31) -> int:
    return price_usage(BOOK, "payg", Usage(actions, active, retained), days_billed=days,
                       days_in_period=31).total_cents


def test_worked_check_11_25m_actions_is_525_dollars() -> None:
    priced = price_usage(BOOK, "payg", Usage(actions=Decimal(11_250_000)), days_billed=31, days_in_period=31)
    assert priced.total_cents == 52_500
    assert [line.amount_cents for line in priced.lines] == [52_500, 0, 0]


def test_shipped_book_has_temporal_cloud_defaults() -> None:
    assert [t.per_million for t in TIERS] == [50, 45, 40, 35, 30, 25]
    assert [t.up_to for t in TIERS] == [5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, None]
    assert BOOK.active_per_gb_hour == Decimal("0.042") and BOOK.retained_per_gb_hour == Decimal("0.00105")
    assert BOOK.plans["essentials"].monthly_minimum == 100 and BOOK.plans["business"].included_active_gb == 2.5
    assert len(price_books()) >= 1


@pytest.mark.parametrize(("boundary", "dollars_below"), [
    (5_000_000, Decimal(250)), (10_000_000, Decimal(475)), (20_000_000, Decimal(875)),
    (50_000_000, Decimal(1925)), (100_000_000, Decimal(3425)),
])
def test_tier_boundaries_change_the_marginal_price(boundary: int, dollars_below: Decimal) -> None:
    at = tiered_actions_amount(TIERS, Decimal(boundary))
    assert at == dollars_below
    idx = [t.up_to for t in TIERS].index(boundary)
    before, after = TIERS[idx].per_million, TIERS[idx + 1].per_million
    assert at - tiered_actions_amount(TIERS, Decimal(boundary - 1_000)) == before * Decimal("0.001")
    assert tiered_actions_amount(TIERS, Decimal(boundary + 1_000)) - at == after * Decimal("0.001")


@given(actions_st, st.integers(min_value=0, max_value=10_000_000))
def test_actions_price_is_monotonic_and_bounded_by_tiers(actions: Decimal, extra: int) -> None:
    more = actions + extra
    assert tiered_actions_amount(TIERS, more) >= tiered_actions_amount(TIERS, actions)
    # Marginal price never above the first tier nor below the last.
    delta = tiered_actions_amount(TIERS, more) - tiered_actions_amount(TIERS, actions)
    assert extra * Decimal(25) / 1_000_000 <= delta <= extra * Decimal(50) / 1_000_000


@given(actions_st, bytes_st, bytes_st, actions_st, bytes_st, bytes_st,
       st.sampled_from(["essentials", "business", "payg"]))
def test_invoice_total_is_monotonic_in_every_usage(a: Decimal, s1: Decimal, r1: Decimal, da: Decimal,
                                                   ds: Decimal, dr: Decimal, plan: str) -> None:
    low = price_usage(BOOK, plan, Usage(a, s1, r1), days_billed=31, days_in_period=31)
    high = price_usage(BOOK, plan, Usage(a + da, s1 + ds, r1 + dr), days_billed=31, days_in_period=31)
    assert high.total_cents >= low.total_cents
    for lo, hi in zip(low.lines[:3], high.lines[:3], strict=True):
        assert hi.amount_cents >= lo.amount_cents


@given(actions_st, bytes_st, bytes_st, st.sampled_from(["essentials", "business", "payg"]),
       st.integers(min_value=1, max_value=31))
def test_each_line_is_rounded_once_and_total_is_sum_of_lines(a: Decimal, s: Decimal, r: Decimal, plan: str,
                                                             days: int) -> None:
    priced = price_usage(BOOK, plan, Usage(a, s, r), days_billed=days, days_in_period=31)
    for line in priced.lines:
        assert line.amount_cents == line_cents(line.exact_amount)
        assert abs(Decimal(line.amount_cents) / 100 - line.exact_amount) <= Decimal("0.005")
    assert priced.total_cents == sum(line.amount_cents for line in priced.lines)
    minimum = line_cents(prorate(BOOK.plans[plan].monthly_minimum, days, 31))
    assert priced.total_cents == max(minimum, sum(line.amount_cents for line in priced.lines[:3]))


def test_rounding_is_half_up_to_cents() -> None:
    assert line_cents(Decimal("0.005")) == 1
    assert line_cents(Decimal("0.00499999")) == 0
    assert line_cents(Decimal("1.125")) == 113
    # 1 GB-hour of retained storage is $0.00105: rounds to 0 cents; 10 GB-hours is $0.0105: 1 cent.
    assert payg(retained=Decimal(10**9)) == 0
    assert payg(retained=Decimal(10 * 10**9)) == 1


def test_essentials_allocations_for_a_full_31_day_month() -> None:
    usage = Usage(actions=Decimal(3_000_000), active_byte_hours=Decimal(744 * 10**9),
                  retained_byte_hours=Decimal(40 * 744 * 10**9))
    priced = price_usage(BOOK, "essentials", usage, days_billed=31, days_in_period=31)
    # 2M actions beyond the included 1M, at the first tier: $100; storage fully included.
    assert [line.amount_cents for line in priced.lines] == [10_000, 0, 0]
    assert priced.total_cents == 10_000
    small = price_usage(BOOK, "essentials", Usage(actions=Decimal(1_500_000)), days_billed=31, days_in_period=31)
    assert small.lines[0].amount_cents == 2_500 and small.lines[-1].kind == "minimum"
    assert small.total_cents == 10_000


@given(st.integers(min_value=0, max_value=31), st.integers(min_value=0, max_value=31))
def test_allocation_proration_is_linear_in_days(d1: int, d2: int) -> None:
    lo, hi = sorted((d1, d2))
    full = BOOK.plans["business"].included_actions
    assert prorate(full, 31, 31) == full
    assert prorate(full, 0, 31) == 0
    assert prorate(full, lo, 31) <= prorate(full, hi, 31)
    assert prorate(full, lo, 31) + prorate(full, 31 - lo, 31) == full


@given(actions_st, st.integers(min_value=1, max_value=30))
def test_fewer_days_never_cost_less_for_the_same_usage_above_the_minimum(a: Decimal, days: int) -> None:
    # Smaller allocations for a partial month: the usage lines never get cheaper.
    part = price_usage(BOOK, "business", Usage(actions=a), days_billed=days, days_in_period=31)
    full = price_usage(BOOK, "business", Usage(actions=a), days_billed=31, days_in_period=31)
    assert part.lines[0].amount_cents >= full.lines[0].amount_cents


def test_partial_month_prorates_minimum_and_allocation() -> None:
    # Business for 15 of 30 days: minimum $250, 1.25M actions included.
    priced = price_usage(BOOK, "business", Usage(actions=Decimal(1_250_000)), days_billed=15, days_in_period=30)
    assert priced.lines[0].amount_cents == 0
    assert priced.total_cents == 25_000
    over = price_usage(BOOK, "business", Usage(actions=Decimal(2_250_000)), days_billed=15, days_in_period=30)
    assert over.lines[0].amount_cents == 5_000


def test_period_helpers() -> None:
    from datetime import UTC, datetime
    assert days_in_period("2024-02") == 29 and days_in_period("2026-10") == 31
    start, end = period_bounds("2026-12")
    assert (start.month, end.year, end.month) == (12, 2027, 1)
    assert previous_period(datetime(2027, 1, 1, 0, 5, tzinfo=UTC)) == "2026-12"
    assert days_billed("2026-10", datetime(2026, 10, 17, 23, tzinfo=UTC)) == 15
    assert days_billed("2026-10", datetime(2025, 1, 1, tzinfo=UTC)) == 31
    assert days_billed("2026-10", datetime(2026, 11, 2, tzinfo=UTC)) == 0


def test_bad_price_books_are_refused() -> None:
    good = (price_books()[0], )
    assert good
    text = """version="x"\neffective_from=2024-01-01\n[actions]
tiers=[{up_to=10, per_million=1},{up_to=5, per_million=1},{per_million=1}]
[storage]\nactive_per_gb_hour=1\nretained_per_gb_hour=1\n[plans.payg]\nmonthly_minimum=0\nincluded_actions=0
included_active_gb=0\nincluded_retained_gb=0\n"""
    with pytest.raises(ValueError):
        parse_price_book(text)
    with pytest.raises(LookupError):
        price_book_for(date(2000, 1, 1))
