"""Slow down repeated authentication failures, per client address.

After ``limit`` failed authentications from one address within ``window_seconds``, every authentication
from that address is refused with 429 until the oldest of those failures leaves the window. The state is
in memory, per API process: enough to make guessing the operator token or an API key impractical.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from api.appkeys import SETTINGS

# Addresses tracked at once; past this the least recently failing ones are forgotten (bounded memory).
MAX_TRACKED_CLIENTS = 100_000


class FailureThrottle:
    """Failed-authentication counts per client in a sliding window.

    Args:
        limit: Failures allowed within the window; the next authentication is refused.
        window_seconds: Length of the sliding window.
        clock: Monotonic seconds (a test may pass its own).
    """

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds the client must wait before authenticating again, or None if it may now."""
        times = self._recent(client)
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[-self.limit] + self.window_seconds - self._clock()))

    def record_failure(self, client: str) -> None:
        """Count one failed authentication of ``client`` now."""
        times = self._recent(client)
        if times is None:
            times = deque(maxlen=max(self.limit, 1))
            self._failures[client] = times
            while len(self._failures) > MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)
        self._failures.move_to_end(client)
        times.append(self._clock())

    def _recent(self, client: str) -> deque[float] | None:
        """The client's failures still inside the window (older ones dropped), None if there are none."""
        times = self._failures.get(client)
        if times is None:
            return None
        horizon = self._clock() - self.window_seconds
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times


_THROTTLES: weakref.WeakKeyDictionary[web.Application, FailureThrottle] = weakref.WeakKeyDictionary()


def throttle_of(app: web.Application) -> FailureThrottle:
    """The application's throttle, made from its settings on first use."""
    found = _THROTTLES.get(app)
    if found is None:
        settings = app[SETTINGS]
        found = FailureThrottle(settings.auth_failure_limit, settings.auth_failure_window_seconds)
        _THROTTLES[app] = found
    return found


def client_address(request: web.Request) -> str:
    """The caller's address: the peer, or with ``api_trusted_proxy_hops`` set, the address that many
    hops back in X-Forwarded-For (the proxies in front of the API append to it; hops before them can be forged).
    """
    return caller_address(request.remote, request.headers.get("X-Forwarded-For", ""),
                          request.app[SETTINGS].api_trusted_proxy_hops)


def caller_address(peer: str | None, forwarded_for: str, hops: int) -> str:
    """The caller's address from the connection's peer and an ``X-Forwarded-For`` value (HTTP header or gRPC
    metadata ``x-forwarded-for``), trusting ``hops`` proxies in front of the API."""
    if hops > 0:
        forwarded = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return peer or "unknown"
