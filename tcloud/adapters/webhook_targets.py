"""Which URLs a customer may point a webhook at, and a resolver that keeps deliveries off private networks.

A customer-supplied URL is called from inside the platform, so by default it must be ``https`` and may reach
only public addresses: not loopback, private ranges, link-local (cloud metadata at 169.254.169.254) or any
other reserved range. The check runs when the URL is saved (for IP literals and the scheme) and again at
every delivery, on the addresses the name resolves to then; aiohttp connects to exactly the addresses the
resolver returned, so a name cannot resolve to a public address for the check and a private one for the
connection. ``allow_private`` (the local platform and the tests) lifts both rules.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_LENGTH = 2048


class TargetRefused(OSError):
    """The URL or the addresses it resolves to may not be called."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL as it will be called, or ``ValueError`` saying what is wrong with it."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"webhook_url must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise ValueError("webhook_url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise ValueError(f"webhook_url is not a valid URL: {err}") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise ValueError(f"webhook_url must be an {' or '.join(schemes)} URL")
    if not host:
        raise ValueError("webhook_url must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook_url must not carry credentials")
    if port == 0:
        raise ValueError("webhook_url has no valid port")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValueError("webhook_url's host is not a valid host name") from None
    try:
        check_address(host, allow_private=allow_private)
    except TargetRefused:
        raise ValueError("webhook_url must reach a public address") from None
    name = host.rstrip(".").lower()
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        raise ValueError("webhook_url must reach a public address")
    return url


def check_address(host: str, *, allow_private: bool) -> None:
    """Refuse an IP literal that is not public (aiohttp does not ask the resolver for those)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not allow_private and not is_public(host.strip("[]")):
        raise TargetRefused(f"{host} is not a public address")


class PublicOnlyResolver(ThreadedResolver):
    """The system resolver, refusing a name if any address it resolves to is not public."""

    def __init__(self, *, allow_private: bool) -> None:
        super().__init__()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        if not self._allow_private:
            refused = [r["host"] for r in results if not is_public(r["host"])]
            if refused:
                raise TargetRefused(f"{host} resolves to {', '.join(refused)}, which is not a public address")
        return results
