"""Fuzzing the Cloud Ops gRPC door: random request messages for every implemented method, random bytes as requests
of every method, and wrong metadata, over a real channel to the API's CloudService.

Messages are drawn from the service descriptor itself (every field with a value of its proto type: strings among
real ids of this account and of another, odd and oversized text, integers over their whole range, unknown enum
numbers, timestamps of any second), as an account admin, a read-only service account, anonymous and a wrong key.
Whatever comes in: never INTERNAL or UNKNOWN, every error with a message, no id of the other account in any answer
(but an error repeating its own request, or data the fuzzer itself stored under such a string), and the server
still healthy afterwards.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest_asyncio
from aiohttp.test_utils import TestClient
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.api.cloud.billing.v1 import BillingReportSpec
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateBillingReportRequest,
    GetAccountRequest,
    GetUsageRequest,
)
from temporalio.api.cloud.identity.v1 import ApiKeySpec

from api import cloud_grpc
from tcloud.settings import Settings
from tests.cloud_door_support import (
    Door,
    Outcome,
    Tenant,
    door_of,
    make_tenant,
    new_key,
    new_service_account,
    request_class,
    unthrottled_cloud_app,
)
from tests.figures import Figures

__all__ = ["unthrottled_cloud_app"]  # the module's fixture, from the support module

# Examples per implemented method (random messages) and per method (random bytes); the bench raises them.
EXAMPLES = int(os.environ.get("TCLOUD_GRPC_FUZZ_EXAMPLES", "35"))
Code = grpc.StatusCode
# What no request may ever get: a crash (INTERNAL, UNKNOWN), or a server that stopped answering in time.
NEVER = {Code.INTERNAL, Code.UNKNOWN, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.DATA_LOSS}
MAX_DEPTH = 3
# UTC midnights (what day-based methods accept) just past the year 9999 and before the year 1, and far beyond.
OUT_OF_RANGE_MIDNIGHTS = [253402300800, -62135683200, 86400 * 10**10, -86400 * 10**10]
# In range, at its edges: the last midnight, hour and second of the year 9999, the first second of the year 1.
EDGE_SECONDS = [253402214400, 253402297200, 253402300799, -62135596800]
T = TypeVar("T")


@dataclass
class Fuzz:
    """One module's run: the door, Alice (who calls), Bob (whose ids must never show), what came back."""

    door: Door
    loop: asyncio.AbstractEventLoop
    alice: Tenant
    bob: Tenant
    callers: dict[str, str | None]  # name -> token
    known: list[str]  # strings the fuzzer draws besides random text: real ids of both accounts
    written: set[str] = field(default_factory=set)  # Bob's ids the fuzzer itself stored in Alice's account
    statuses: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    unsendable: int = 0
    problems: list[str] = field(default_factory=list)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the test's loop (which serves the API) from the fuzzer's thread."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=180)

    def send(self, what: str, method: str, request: Message | bytes, caller: str,
             metadata: Sequence[tuple[str, str]] = ()) -> Outcome | None:
        """Send one case and record what is wrong with its answer; None if the client refused to send it."""
        token = self.callers[caller]
        try:
            outcome = self.run(self.door.call(method, request, token, metadata))
        except (ValueError, grpc.aio.UsageError):  # metadata the client library will not put on the wire
            self.unsendable += 1
            return None
        self.calls += 1
        self.statuses[outcome.code.name] += 1
        sent = request if isinstance(request, bytes) else request.SerializeToString()
        sent += b"".join(f"{k}{v}".encode() for k, v in metadata)
        if not method.startswith("Get"):  # a display name, a tag, an email: Bob's id as Alice's data from now on
            self.written.update(i for i in self.bob.ids() if i.encode() in sent)
        problem = self.problem(outcome, sent, anonymous=caller in ("anonymous", "wrong key"))
        if problem:
            self.problems.append(f"{what} {method} as {caller}: {problem}; request {sent[:300]!r}")
        return outcome

    def problem(self, outcome: Outcome, sent: bytes, *, anonymous: bool) -> str | None:
        if outcome.code in NEVER:
            return f"{outcome.code.name} {outcome.message!r}"
        if outcome.code != Code.OK and not outcome.message.strip():
            return f"{outcome.code.name} without a message"
        if anonymous and outcome.code != Code.UNAUTHENTICATED:
            return f"{outcome.code.name} to a caller without a valid key"
        # Bob's ids in an answer: never, unless the fuzzer stored them as Alice's own data earlier; an error may
        # repeat what its request said ("namespace <id> not found").
        shown = outcome.answer + outcome.message.encode()
        leaked = [i for i in self.bob.ids() if i.encode() in shown and not any(i in w for w in self.written)
                  and not (outcome.code != Code.OK and i.encode() in sent)]
        if leaked:
            return f"shows the other account's {leaked}: {shown[:300]!r}"
        return None


# --- Requests drawn from the descriptor -----------------------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2, 1000, 1001, 2**31 - 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(-5, 2000).filter(lambda v: low <= v <= high),
                     st.integers(low, high))


def _strings(known: list[str]) -> st.SearchStrategy[str]:
    text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
    return st.one_of(
        st.sampled_from(known),
        text,
        st.from_regex(r"[a-z][a-z0-9-]{0,40}(\.[a-z0-9]{0,32})?", fullmatch=True),  # names and namespace ids
        st.builds(lambda a, b: f"{a}\x00{b}", text, text),
        st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\x00", "\U0001f600", "%", "'"]),
                  st.integers(300, 70_000)),  # oversized
        st.sampled_from(["2024-01-01", "v0.3.0", "ROLE_ADMIN", "*", "../..", "%00", "' OR 1=1 --"]),
    )


class Requests:
    """Hypothesis strategies for any message of the Cloud Ops protos, from its descriptor."""

    def __init__(self, known: list[str]):
        self.strings = _strings(known)
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._message(descriptor, depth)
        return self._cache[key]

    def _message(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(descriptor)
        if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            seconds = st.one_of(_integers(-2**63, 2**63 - 1), st.integers(-62135596800, 253402300799),
                                st.integers(1_600_000_000, 1_900_000_000).map(lambda s: s - s % 86400),
                                st.sampled_from(OUT_OF_RANGE_MIDNIGHTS + EDGE_SECONDS))
            nanos = st.one_of(st.just(0), _integers(-2**31, 2**31 - 1))
            return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)
        if depth >= MAX_DEPTH:
            return st.just(cls())
        fields = {f.name: self.field(f, depth) for f in descriptor.fields}
        return st.fixed_dictionaries({}, optional=fields).map(lambda values: _filled(cls, descriptor, values))

    def field(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            return st.dictionaries(self.single(key, depth), self.single(value, depth), max_size=3)
        if f.is_repeated:
            return st.lists(self.single(f, depth), max_size=3)
        return self.single(f, depth)

    def single(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        kind = f.type
        if kind == FieldDescriptor.TYPE_STRING:
            return self.strings
        if kind == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=64)
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind in _INT_RANGES:
            return _integers(*_INT_RANGES[kind])
        if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
        if kind == FieldDescriptor.TYPE_ENUM:
            assert f.enum_type is not None
            return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]), _integers(-2**31, 2**31 - 1))
        assert f.message_type is not None
        return self.message(f.message_type, depth + 1)


def _filled(cls: type[Message], descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        f = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            composite = f.message_type.fields_by_name["value"].message_type is not None
            for k, v in value.items():
                if composite:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif f.is_repeated:
            target.extend(value)
        elif f.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# --- Fixtures ---------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def fuzz(unthrottled_cloud_app: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
               settings: Settings) -> AsyncIterator[Fuzz]:
    door = door_of(unthrottled_cloud_app)
    alice = await make_tenant(unthrottled_cloud_app, door, operator_headers, pool, "gfza", callers=False)
    bob = await make_tenant(unthrottled_cloud_app, door, operator_headers, pool, "gfzb", callers=False)
    reader = await new_service_account(door, alice.token, "read")
    callers: dict[str, str | None] = {"admin": alice.token, "read": (await new_key(door, alice.token, reader))[1],
                                      "anonymous": None, "wrong key": "tcsk_000000000000_not-a-key"}
    # Alice's ids, but never her admin key's (the fuzzer revoking or disabling it would lock itself out).
    known = [i for i in alice.ids() if i != alice.account.key_id] + bob.ids() + [settings.cloud_region, ""]
    run = Fuzz(door, asyncio.get_running_loop(), alice, bob, callers, known)
    yield run
    await door.close()


async def _still_healthy(fuzz: Fuzz) -> None:
    assert await fuzz.door.serving(), "the health service no longer says SERVING"
    answer = await fuzz.door.ok("GetAccount", GetAccountRequest(), fuzz.alice.token)
    assert answer.SerializeToString(), "the server no longer answers a plain call"


def _settings(examples: int) -> Any:
    return hypothesis_settings(max_examples=examples, database=None, deadline=None,
                               phases=[Phase.generate], suppress_health_check=list(HealthCheck))


def _report(fuzz: Fuzz, figures: Figures, what: str, before: int) -> None:
    figures.add("Cloud Ops gRPC calls fuzzed", fuzz.calls - before)
    figures.set("Cloud Ops gRPC fuzz statuses", ", ".join(f"{c} {n}" for c, n in fuzz.statuses.most_common()))
    print(f"{what}: {fuzz.calls - before} calls ({fuzz.unsendable} unsendable so far); statuses so far "
          f"{dict(fuzz.statuses)}")


# --- Tests ------------------------------------------------------------------------------------------------------


async def test_random_messages_to_every_implemented_method(fuzz: Fuzz, figures: Figures) -> None:
    requests = Requests(fuzz.known)
    before = fuzz.calls

    def fuzz_method(method: str) -> None:
        descriptor = cloud_grpc.DESCRIPTOR.methods_by_name[method].input_type

        @_settings(EXAMPLES)
        @given(request=requests.message(descriptor), caller=st.sampled_from(sorted(fuzz.callers)))
        def one(request: Message, caller: str) -> None:
            fuzz.send("message", method, request, caller)

        one()

    fuzz.problems.clear()
    for method in cloud_grpc.METHODS:
        await asyncio.to_thread(fuzz_method, method)
    _report(fuzz, figures, "random messages", before)
    assert fuzz.problems == [], "\n".join(fuzz.problems)
    # Hypothesis stops early where there is little to vary (GetAccountRequest has no field): one call per caller.
    assert fuzz.calls - before >= len(cloud_grpc.METHODS) * min(EXAMPLES, len(fuzz.callers))
    # The fuzzer reached past authentication and validation: answers, refusals of arguments, absent resources.
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED"} <= set(fuzz.statuses), fuzz.statuses
    await _still_healthy(fuzz)


async def test_random_bytes_as_the_request_of_every_method(fuzz: Fuzz, figures: Figures) -> None:
    before = fuzz.calls
    methods = [m.name for m in cloud_grpc.DESCRIPTOR.methods]
    corrupt = [b"\xff", b"\x0a\x02\xff\xfe", b"\x0a\x05ab", b"\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
               b"\x08" + b"\xff" * 11, b"\x0a\x00" * 10_000]

    def fuzz_method(method: str) -> None:
        for raw in corrupt:  # what random bytes hit only sometimes, every time: bad UTF-8, truncation, varints
            fuzz.send("corrupt bytes", method, raw, "admin")

        @_settings(max(2, EXAMPLES // 4))
        @given(raw=st.binary(max_size=200), caller=st.sampled_from(sorted(fuzz.callers)))
        def one(raw: bytes, caller: str) -> None:
            fuzz.send("random bytes", method, raw, caller)

        one()

    fuzz.problems.clear()
    for method in methods:
        await asyncio.to_thread(fuzz_method, method)
    _report(fuzz, figures, "random bytes", before)
    assert fuzz.problems == [], "\n".join(fuzz.problems)
    # A message no parser can read is refused as an argument, once the caller is known.
    outcome = await fuzz.door.call("GetNamespace", b"\x0a\x02\xff\xfe", fuzz.alice.token)
    assert outcome.code == Code.INVALID_ARGUMENT and "GetNamespaceRequest" in outcome.message, outcome
    outcome = await fuzz.door.call("GetNamespace", b"\x0a\x02\xff\xfe")
    assert outcome.code == Code.UNAUTHENTICATED, outcome
    await _still_healthy(fuzz)


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


async def test_wrong_metadata(fuzz: Fuzz, figures: Figures) -> None:
    """Malformed API versions, authorization in every wrong shape, odd extra metadata: refused with the right code."""
    before = fuzz.calls
    token = fuzz.alice.token
    versions = st.one_of(_PRINTABLE, st.sampled_from(["2024-13-01", "2024-02-30", "v1", "1.2", "v1.2.3.4", "",
                                                      "2024-10-01-00", "v0.3.0-", " 2024-10-01", "9999-99-99"]))
    authorizations = st.one_of(
        _PRINTABLE, st.builds(lambda t: f"Bearer {t}", _PRINTABLE),
        st.sampled_from(["Bearer", "Bearer ", "Basic " + token, token, f"Bearer {token}x", f"Bearer {token[:-1]}",
                         f"Token {token}", "Bearer " + "x" * 4000, f"Bearer tcsk_{'0' * 12}_"]))
    extra = st.lists(st.tuples(st.from_regex(r"x-[a-z0-9_.-]{1,20}", fullmatch=True), _PRINTABLE), max_size=3)

    def fuzz_all() -> None:
        @_settings(EXAMPLES * 2)
        @given(version=versions, extra=extra)
        def bad_version(version: str, extra: list[tuple[str, str]]) -> None:
            outcome = fuzz.send("version", "GetAccount", GetAccountRequest(), "admin",
                                [("temporal-cloud-api-version", version), *extra])
            if outcome is not None and outcome.code not in (Code.OK, Code.INVALID_ARGUMENT):
                fuzz.problems.append(f"version {version!r}: {outcome.code.name} {outcome.message!r}")
            elif outcome is not None and outcome.code == Code.INVALID_ARGUMENT and \
                    "temporal-cloud-api-version" not in outcome.message:
                fuzz.problems.append(f"version {version!r} refused without naming the header: {outcome.message!r}")

        @_settings(EXAMPLES * 2)
        @given(authorization=authorizations, version=st.one_of(st.just("2024-10-01"), versions))
        def bad_authorization(authorization: str, version: str) -> None:
            # Sent as "anonymous" (no key of the fuzzer's own): anything but UNAUTHENTICATED is a problem.
            fuzz.send("authorization", "GetNamespaces", b"", "anonymous",
                      [("authorization", authorization), ("temporal-cloud-api-version", version)])

        bad_version()
        bad_authorization()

    fuzz.problems.clear()
    await asyncio.to_thread(fuzz_all)
    # The scheme is case-insensitive, as HTTP's; the last authorization sent is the one read.
    for scheme in ("Bearer", "bearer", "BEARER"):
        outcome = await fuzz.door.call("GetAccount", GetAccountRequest(), metadata=[("authorization",
                                                                                     f"{scheme} {token}")])
        assert outcome.code == Code.OK, (scheme, outcome)
    # A request larger than the server takes (4 MB) is refused by gRPC itself, never a crash.
    outcome = await fuzz.door.call("GetNamespace", request_class("GetNamespace")(namespace="x" * 5_000_000), token)
    assert outcome.code == Code.RESOURCE_EXHAUSTED, outcome
    _report(fuzz, figures, "wrong metadata", before)
    assert fuzz.problems == [], "\n".join(fuzz.problems)
    await _still_healthy(fuzz)


async def test_what_the_fuzzer_found_stays_fixed(fuzz: Fuzz) -> None:
    """Answered UNKNOWN or INTERNAL before: a request that is not its method's message, and timestamps outside
    protobuf's range (an API key's expiry, a usage range)."""
    token = fuzz.alice.token
    for raw in (b"\xff", b"\x0a\x02\xff\xfe"):
        outcome = await fuzz.door.call("GetUser", raw, token)
        assert outcome.code == Code.INVALID_ARGUMENT and "GetUserRequest" in outcome.message, outcome
        assert (await fuzz.door.call("GetUser", raw)).code == Code.UNAUTHENTICATED
        assert (await fuzz.door.call("GetUserGroups", raw, token)).code == Code.UNIMPLEMENTED
    for seconds in (10**12, -10**12):
        outcome = await fuzz.door.call("CreateApiKey", CreateApiKeyRequest(spec=ApiKeySpec(
            display_name="far", expiry_time=Timestamp(seconds=seconds))), token)
        assert outcome.code == Code.INVALID_ARGUMENT and "spec.expiryTime" in outcome.message, outcome
    outcome = await fuzz.door.call("CreateApiKey", CreateApiKeyRequest(spec=ApiKeySpec(
        display_name="far", expiry_time=Timestamp(seconds=2_000_000_000, nanos=-1))), token)
    assert outcome.code == Code.INVALID_ARGUMENT, outcome
    outcome = await fuzz.door.call("GetUsage", GetUsageRequest(
        start_time_inclusive=Timestamp(seconds=OUT_OF_RANGE_MIDNIGHTS[0])), token)
    assert outcome.code == Code.INVALID_ARGUMENT and "startTimeInclusive" in outcome.message, outcome
    # At the edges of the range: answered, whatever the answer.
    last_midnight, last_hour, last_second, first_second = EDGE_SECONDS
    edges: list[tuple[str, Message]] = [
        ("GetUsage", GetUsageRequest(start_time_inclusive=Timestamp(seconds=last_midnight - 86400),
                                     end_time_exclusive=Timestamp(seconds=last_midnight))),
        ("GetUsage", GetUsageRequest(start_time_inclusive=Timestamp(seconds=first_second),
                                     end_time_exclusive=Timestamp(seconds=first_second + 86400))),
        ("GetUsage", GetUsageRequest(start_time_inclusive=Timestamp(seconds=first_second), page_size=1000)),
        ("CreateApiKey", CreateApiKeyRequest(spec=ApiKeySpec(display_name="edge", expiry_time=Timestamp(
            seconds=last_second, nanos=999_999_999)))),
    ]
    for granularity, start, end in ((BillingReportSpec.BILLING_REPORT_GRANULARITY_HOURLY, last_hour - 3600, last_hour),
                                    (BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY, last_midnight - 86400,
                                     last_midnight),
                                    (BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY, first_second,
                                     first_second + 86400)):
        edges.append(("CreateBillingReport", CreateBillingReportRequest(spec=BillingReportSpec(
            granularity=granularity, start_time_inclusive=Timestamp(seconds=start),
            end_time_exclusive=Timestamp(seconds=end)))))
    for method, request in edges:
        outcome = await fuzz.door.call(method, request, token)
        assert outcome.code not in NEVER, (method, request, outcome)
    await _still_healthy(fuzz)
