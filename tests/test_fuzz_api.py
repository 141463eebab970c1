"""Schemathesis against the app's own /openapi.json: every route, as anonymous, a customer and the operator.

Zero 5xx; every error is JSON ``{code, message}``; oversized and malformed bodies are refused with a 4xx.
The app runs with the real Postgres and localstripe and a Temporal dev server of this module's own (billing
runs and backups it starts must not collide with other modules' workflow ids).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import requests
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation, BaseSchema
from temporalio.runtime import Runtime

from api.app import MAX_BODY_BYTES, create_app
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import create_account, unique
from tests.figures import Figures
from tests.security_support import Identity, json_error_problem, on_server, private_temporal, running_worker

# Cases per operation, identity and mode; the bench (bench/reliability_suite.py) raises it.
EXAMPLES = int(os.environ.get("TCLOUD_FUZZ_EXAMPLES", "5"))
# Errors of a client library refusing to send what the fuzzer made (bad header bytes, ...): not the app's.
UNSENDABLE = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError)


@dataclass
class FuzzReport:
    sent: int = 0
    unsendable: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    by_identity: dict[str, dict[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzz_temporal(settings: Settings, temporal_factory: harness.TemporalFactory,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.TemporalServer]:
    yield from private_temporal(temporal_factory, tmp_path_factory.mktemp("fuzz-temporal"),
                                settings.control_namespace)


@pytest_asyncio.fixture(scope="module")
async def fuzz_api(settings: Settings, fuzz_temporal: harness.TemporalServer,
                   runtime: Runtime) -> AsyncIterator[TestClient]:
    """The API and the real worker on this module's server: what the fuzzer starts really runs."""
    # Signup on, to fuzz it too; the auth slow-down off, since the fuzzer sends wrong tokens by the thousand.
    fuzz_settings = on_server(settings, fuzz_temporal, signup_enabled=True, auth_failure_limit=10**9)
    async with running_worker(fuzz_settings, runtime):
        client = TestClient(TestServer(create_app(fuzz_settings)))
        await client.start_server()
        yield client
        await client.close()


@pytest_asyncio.fixture(scope="module")
async def customer(fuzz_api: TestClient, operator_headers: dict[str, str]) -> tuple[Identity, dict[str, str]]:
    """A customer with a namespace, and the ids the fuzzer puts in path parameters (a spare key's, so the
    fuzzer revoking it leaves the customer signed in)."""
    account = await create_account(fuzz_api, operator_headers, prefix="fuzz")
    resp = await fuzz_api.post("/cloud/namespaces", headers=account.headers,
                               json={"spec": {"name": unique("fz-"), "retentionDays": 3}})
    assert resp.status == 202, await resp.text()
    created = await resp.json()
    resp = await fuzz_api.post("/cloud/api-keys", headers=account.headers, json={"spec": {"displayName": "spare"}})
    assert resp.status in (200, 201, 202), await resp.text()
    spare = await resp.json()
    known = {"namespace": created["namespace"], "async_operation_id": created["asyncOperation"]["id"],
             "key_id": spare["keyId"], "account_id": account.id}
    return Identity("customer", account.headers), known


def base_url(api: TestClient) -> str:
    return str(api.make_url("")).rstrip("/")


async def openapi_schema(api: TestClient) -> BaseSchema:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    return schemathesis.openapi.from_dict(await resp.json())


def operations(schema: BaseSchema) -> list[APIOperation]:
    """Every operation of the document; an operation schemathesis cannot read fails the test."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"schemathesis cannot read an operation of /openapi.json: {result.err()}")
        found.append(result.ok())
    return found


def send(case: Any, url: str, identity: Identity, report: FuzzReport) -> None:
    """Send one generated case as ``identity`` and record what is wrong with the answer."""
    try:
        response = case.call(base_url=url, headers=identity.headers, timeout=30)
    except UNSENDABLE:
        report.unsendable += 1
        return
    except requests.exceptions.RequestException as err:  # reset, timeout: the app failed
        report.problems.append(f"{identity.name} {case.method} {case.formatted_path}: {err!r}")
        return
    report.sent += 1
    report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
    mine = report.by_identity.setdefault(identity.name, {})
    mine[response.status_code] = mine.get(response.status_code, 0) + 1
    content_type = (response.headers.get("content-type") or [""])[0]
    problem = json_error_problem(response.status_code, content_type, response.content)
    if problem:
        report.problems.append(f"{identity.name} {case.method} {case.formatted_path}: {problem}")


def fuzz_operation(operation: APIOperation, url: str, identity: Identity, report: FuzzReport, *,
                   mode: GenerationMode, examples: int, path_parameters: dict[str, str] | None = None) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @hypothesis_settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: Any) -> None:
        send(case, url, identity, report)

    try:
        run()
    except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body)
        pass


def fuzz_all(schema: BaseSchema, url: str, identities: list[Identity], known: dict[str, str]) -> FuzzReport:
    """Every operation, every identity, valid and invalid inputs; then valid inputs on the customer's real ids."""
    report = FuzzReport()
    for operation in operations(schema):
        for identity in identities:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(operation, url, identity, report, mode=mode, examples=EXAMPLES)
            names = [p.name for p in operation.path_parameters]
            if names and all(n in known for n in names):
                fuzz_operation(operation, url, identity, report, mode=GenerationMode.POSITIVE, examples=EXAMPLES,
                               path_parameters={n: known[n] for n in names})
    return report


async def test_schemathesis_finds_no_5xx_and_only_json_errors(
        fuzz_api: TestClient, operator_headers: dict[str, str], customer: tuple[Identity, dict[str, str]],
        figures: Figures) -> None:
    schema = await openapi_schema(fuzz_api)
    customer_identity, known = customer
    identities = [Identity("anonymous", {}), customer_identity, Identity("operator", operator_headers),
                  Identity("bad-key", {"Authorization": "Bearer tcsk_000000000000_not-a-key"})]
    # Requests are synchronous: send them from a thread while this loop serves the app.
    report = await asyncio.to_thread(fuzz_all, schema, base_url(fuzz_api), identities, known)
    figures.add("requests fuzzed", report.sent)
    print(f"fuzzed {report.sent} requests ({report.unsendable} unsendable), statuses {report.by_identity}")
    assert report.problems == [], "\n".join(report.problems)
    assert len(operations(schema)) >= 30 and report.sent >= len(operations(schema)) * len(identities) * EXAMPLES
    # The fuzzer reached past authentication: successes and validation refusals, not only 401/403/404.
    assert report.statuses.get(200, 0) > 0 and report.statuses.get(400, 0) > 0


def body_operations(schema: BaseSchema) -> list[APIOperation]:
    return [op for op in operations(schema) if op.body]


async def test_oversized_and_malformed_bodies_are_refused(
        fuzz_api: TestClient, operator_headers: dict[str, str], customer: tuple[Identity, dict[str, str]],
        figures: Figures) -> None:
    schema = await openapi_schema(fuzz_api)
    customer_identity, known = customer
    by_auth = {"customer": customer_identity.headers, "operator": operator_headers}
    bad_bodies: list[tuple[str, bytes, str, set[int]]] = [
        ("oversized", b'{"pad": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}', "application/json", {413}),
        ("truncated JSON", b'{"spec": {"name": ', "application/json", {400}),
        ("not UTF-8", b'{"name": "\xff\xfe"}', "application/json", {400}),
        ("a JSON array", b"[]", "application/json", {400}),
        ("JSON null", b"null", "application/json", {400}),
        ("a string", b'"text"', "application/json", {400}),
        ("form data", b"name=x", "application/x-www-form-urlencoded", {400, 415}),
        ("deeply nested", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json", {400}),
        ("a NUL in a string", b'{"name": "a\\u0000b", "spec": {"name": "a\\u0000b"}}', "application/json", {400}),
        ("a lone surrogate", b'{"name": "\\ud800", "spec": {"name": "\\ud800"}}', "application/json", {400}),
    ]
    checked = 0
    problems: list[str] = []
    operations_with_bodies = body_operations(schema)
    assert len(operations_with_bodies) >= 6
    for operation in operations_with_bodies:
        path = operation.path.format(**{p.name: known.get(p.name, "nosuch") for p in operation.path_parameters})
        auth = operation.definition.raw.get("security") or []
        headers = by_auth["operator" if auth and "operatorToken" in auth[0] else "customer"] if auth else {}
        for what, body, content_type, expected in bad_bodies:
            try:
                resp = await fuzz_api.request(operation.method.upper(), path, data=body,
                                              headers={**headers, "Content-Type": content_type})
            except aiohttp.ClientError as err:  # the server may close on an oversized body: it must answer first
                problems.append(f"{operation.method} {path} {what}: {err!r}")
                continue
            raw = await resp.read()
            checked += 1
            problem = json_error_problem(resp.status, resp.content_type, raw)
            if problem or resp.status not in expected | {403, 404, 409}:
                problems.append(f"{operation.method.upper()} {path} {what}: {resp.status} {raw[:200]!r}")
    figures.add("requests fuzzed", checked)
    assert problems == []


async def test_nul_and_odd_characters_in_every_path_and_query_parameter(
        fuzz_api: TestClient, operator_headers: dict[str, str], customer: tuple[Identity, dict[str, str]],
        figures: Figures) -> None:
    """What the fuzzer finds only sometimes, every time: text PostgreSQL cannot store, in every parameter."""
    schema = await openapi_schema(fuzz_api)
    customer_identity, _ = customer
    odd = ["%00", "a%00b", "%ED%A0%80", "%FF", "..%2F..%2Fetc", "x" * 5000]
    problems: list[str] = []
    sent = 0
    for operation in operations(schema):
        auth = operation.definition.raw.get("security") or []
        headers = (operator_headers if auth and "operatorToken" in auth[0] else customer_identity.headers) \
            if auth else {}
        path_names = [p.name for p in operation.path_parameters]
        query_names = [p.name for p in operation.query]
        for value in odd:
            targets = [(operation.path.replace("{" + n + "}", value).replace("{", "").replace("}", ""), "")
                       for n in path_names]
            targets += [(operation.path.format(**{n: "x" for n in path_names}), f"?{q}={value}") for q in query_names]
            for path, query in targets:
                resp = await fuzz_api.request(operation.method.upper(), path + query, headers=headers,
                                              json=write_body_for_probe(operation.method))
                raw = await resp.read()
                sent += 1
                problem = json_error_problem(resp.status, resp.content_type, raw)
                if problem:
                    problems.append(f"{operation.method.upper()} {path}{query}: {problem}")
    figures.add("requests fuzzed", sent)
    assert sent > 50 and problems == [], "\n".join(problems)


def write_body_for_probe(method: str) -> Any:
    return {} if method.upper() in ("POST", "PUT") else None
