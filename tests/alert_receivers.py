"""Receivers for spend-alert deliveries in tests: a webhook endpoint on a real socket that checks the
documented signature itself, and the local platform's mail sink (aiosmtpd into a Maildir)."""

from __future__ import annotations

import hashlib
import hmac
import mailbox
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from launcher import procs
from tests import harness


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class WebhookReceiver:
    """Answers 503 to the first ``fail_first`` requests, then 200; keeps every request it saw."""

    port: int
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hooks/spend") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        status = 503 if len(self.requests) < self.fail_first else 200
        self.requests.append(Received(dict(request.headers), await request.read(), status))
        return web.json_response({"ok": status == 200}, status=status)


def signature_valid(header: str, body: bytes, secret: str, *, tolerance: float = 300) -> bool:
    """What a customer's receiver does with ``Tcloud-Signature`` (written from the README, not our code)."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < tolerance


@asynccontextmanager
async def webhook_receiver(fail_first: int = 0) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(procs.free_port(), fail_first)
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", receiver.port)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


@dataclass
class MailSink:
    port: int
    maildir: Path

    def messages(self) -> list[mailbox.MaildirMessage]:
        if not self.maildir.exists():
            return []
        return list(mailbox.Maildir(self.maildir, create=False))


@contextmanager
def mail_sink(root: Path) -> Iterator[MailSink]:
    """The mail sink ``deploy.sh local`` runs, on a free port."""
    sink = MailSink(procs.free_port(), root / "mail")
    managed = harness.Managed(procs.mail_sink_process(port=sink.port, maildir=sink.maildir, log=root / "mail.log"))
    popen = managed.start()
    try:
        procs.wait_until(lambda: procs.port_open(sink.port), timeout=30, what="mail sink", proc=popen,
                         log=root / "mail.log")
        yield sink
    finally:
        managed.stop()
