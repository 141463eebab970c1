"""Billing periods: calendar months in UTC, spelled ``YYYY-MM``."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(period: str) -> tuple[int, int]:
    """``(year, month)`` of ``YYYY-MM``.

    Raises:
        ValueError: when ``period`` is not a well-formed month.
    """
    m = _PERIOD.match(period)
    if m is None:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return int(m.group(1)), int(m.group(2))


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The period's first instant and the first instant after it (UTC)."""
    year, month = parse_period(period)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def days_in_period(period: str) -> int:
    year, month = parse_period(period)
    return calendar.monthrange(year, month)[1]


def hours_in_period(period: str) -> int:
    return days_in_period(period) * 24


def owed_hours(period: str, metering_began: datetime | None) -> tuple[datetime, datetime]:
    """The part of ``period`` a collector owes hours for: from the later of the period's start and the first hour
    it ever collected (hours before the platform was metering were never collected and never will be) to the
    period's end. Empty (start == end) when metering began after the period; the whole period when it has not
    begun yet (nothing collected: wait for it).
    """
    start, end = period_bounds(period)
    if metering_began is None:
        return start, end
    began = min(max(start, metering_began), end)
    return began, end


def period_of(moment: datetime) -> str:
    """The period containing ``moment``."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_period(moment: datetime) -> str:
    """The month that closed most recently before ``moment``."""
    start, _ = period_bounds(period_of(moment))
    return period_of(start - timedelta(days=1))


def days_billed(period: str, account_created: datetime) -> int:
    """Days of ``period`` the account existed, counting its creation day whole."""
    start, end = period_bounds(period)
    first = max(account_created.astimezone(UTC).date(), start.date())
    last = (end - timedelta(days=1)).date()
    return max(0, (last - first).days + 1) if first <= last else 0


def first_day(period: str) -> date:
    return period_bounds(period)[0].date()
