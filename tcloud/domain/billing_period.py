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


def owed_hours(period: str, metering_began: datetime | None, until: datetime | None = None
               ) -> tuple[datetime, datetime]:
    """The part of ``period`` a collector owes hours for: from the later of the period's start and the first hour
    it ever collected (hours before the platform was metering were never collected and never will be) to the
    period's end (or ``until``, when it is earlier: a closed account's final invoice). Empty (start == end) when
    metering began after the period; the whole period when it has not begun yet (nothing collected: wait for it).
    """
    start, end = period_bounds(period)
    if until is not None:
        end = max(start, min(end, hour_ceiling(until)))
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


def days_billed(period: str, account_created: datetime, account_closed: datetime | None = None) -> int:
    """Days of ``period`` the account existed, counting its creation day and its closing day whole."""
    start, end = period_bounds(period)
    first = max(account_created.astimezone(UTC).date(), start.date())
    last = (end - timedelta(days=1)).date()
    if account_closed is not None:
        last = min(last, account_closed.astimezone(UTC).date())
    return max(0, (last - first).days + 1) if first <= last else 0


def hour_ceiling(moment: datetime) -> datetime:
    """The first whole hour at or after ``moment``: the ledger's hour that holds it is billed whole."""
    floor = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


def billed_until(period: str, account_closed: datetime | None) -> datetime:
    """Where the period's billing of an account stops: its end, or the end of the hour the account closed in."""
    end = period_bounds(period)[1]
    if account_closed is None:
        return end
    return max(period_bounds(period)[0], min(end, hour_ceiling(account_closed)))


def first_day(period: str) -> date:
    return period_bounds(period)[0].date()
