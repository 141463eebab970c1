"""Temporal's Terraform provider (``temporalio/temporalcloud``), built from its Go module and run by the Terraform
CLI with a development override, manages this platform through its Cloud Ops API (gRPC, ``allow_insecure``).

Nothing comes from the Terraform registry: ``dev_overrides`` points the provider's address at the binary
``launcher/gobuild.py`` built, and no ``terraform init`` runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from temporalio.api.cloud.cloudservice.v1 import (
    GetApiKeysRequest,
    GetNamespaceRequest,
    GetServiceAccountsRequest,
    GetUsersRequest,
)
from temporalio.api.cloud.identity.v1 import AccountAccess, NamespaceAccess
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCStatusCode

from launcher import gobuild
from tcloud.settings import Settings
from tests import cloud_support
from tests.accounts_fixtures import create_account, unique
from tests.cloud_support import cloud_client, refused

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

CONFIG = """
terraform {
  required_providers {
    temporalcloud = { source = "temporalio/temporalcloud" }
  }
}

variable "endpoint" { type = string }
variable "api_key" {
  type      = string
  sensitive = true
}
variable "name" { type = string }
variable "region" { type = string }
variable "email" { type = string }
variable "retention" { type = number }
variable "attribute" {
  type    = string
  default = "CustomerId"
}

provider "temporalcloud" {
  endpoint       = var.endpoint
  allow_insecure = true
  api_key        = var.api_key
}

resource "temporalcloud_namespace" "orders" {
  name           = var.name
  regions        = [var.region]
  api_key_auth   = true
  retention_days = var.retention
}

resource "temporalcloud_namespace_tags" "orders" {
  namespace_id = temporalcloud_namespace.orders.id
  tags         = { team = "orders", env = "test" }
}

resource "temporalcloud_namespace_search_attribute" "customer" {
  namespace_id = temporalcloud_namespace.orders.id
  name         = var.attribute
  type         = "keyword"
}

resource "temporalcloud_service_account" "ci" {
  name           = "ci"
  description    = "deploys the orders service"
  account_access = "developer"
  namespace_accesses = [
    { namespace_id = temporalcloud_namespace.orders.id, permission = "write" }
  ]
}

resource "temporalcloud_apikey" "ci" {
  display_name = "ci"
  owner_type   = "service-account"
  owner_id     = temporalcloud_service_account.ci.id
  expiry_time  = "2035-01-01T00:00:00Z"
}

resource "temporalcloud_user" "dev" {
  email          = var.email
  account_access = "read"
  namespace_accesses = [
    { namespace_id = temporalcloud_namespace.orders.id, permission = "read" }
  ]
}
"""


@pytest.fixture(scope="module")
def binaries() -> tuple[Path, Path]:
    """The Terraform CLI and the provider, built from their Go modules once per machine (skip if they cannot be)."""
    try:
        terraform = gobuild.ensure_built(gobuild.TERRAFORM)
        provider = gobuild.ensure_built(gobuild.TERRAFORM_PROVIDER_TEMPORALCLOUD)
    except RuntimeError as err:
        pytest.skip(f"terraform-provider-temporalcloud {gobuild.TERRAFORM_PROVIDER_TEMPORALCLOUD.version} cannot "
                    f"be built here: {err}")
    return terraform, provider


class Terraform:
    """The CLI in one working directory, with the development override and this test's variables."""

    def __init__(self, binary: Path, provider: Path, workdir: Path, variables: dict[str, str]):
        self.binary, self.workdir, self.variables = binary, workdir, variables
        cli_config = workdir / "terraformrc"
        cli_config.write_text('provider_installation {\n'
                              f'  dev_overrides {{ "temporalio/temporalcloud" = {json.dumps(str(provider.parent))} }}\n'
                              '  direct {}\n}\n')
        (workdir / "main.tf").write_text(CONFIG)
        self.env = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
                    "CHECKPOINT_DISABLE": "1", "TF_LOG": "", "HOME": str(workdir)}

    async def run(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        values = {**self.variables, **overrides}
        cmd = [str(self.binary), *args, "-no-color", *[f"-var={k}={v}" for k, v in values.items()]]
        return await asyncio.to_thread(subprocess.run, cmd, cwd=self.workdir, env=self.env, capture_output=True,
                                       text=True, timeout=600, check=False)


async def test_apply_plan_update_and_destroy(binaries: tuple[Path, Path], cloud_app: TestClient, target: str,
                                             operator_headers: dict[str, str], settings: Settings,
                                             tmp_path: Path) -> None:
    account = await create_account(cloud_app, operator_headers, prefix="tf")
    cloud = (await cloud_client(target, account.token)).cloud_service
    name, email = unique("tf-"), f"{unique('dev')}@example.com"
    tf = Terraform(*binaries, tmp_path, {"endpoint": target, "api_key": account.token, "name": name,
                                         "region": settings.cloud_region, "email": email, "retention": "3"})

    applied = await tf.run("apply", "-auto-approve")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    assert "6 added, 0 changed, 0 destroyed" in applied.stdout, applied.stdout[-2000:]
    ns = f"{name}.{account.id}"
    got = (await cloud.get_namespace(GetNamespaceRequest(namespace=ns))).namespace
    assert (got.spec.retention_days, got.spec.api_key_auth.enabled) == (3, True)
    assert dict(got.tags) == {"team": "orders", "env": "test"}
    assert dict(got.spec.search_attributes) == {"CustomerId": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_KEYWORD}
    on_server = await (await Client.connect(settings.temporal_address)).operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=ns))
    assert on_server.custom_attributes["CustomerId"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    [sa] = [s for s in (await cloud.get_service_accounts(GetServiceAccountsRequest())).service_account
            if s.spec.name == "ci"]
    assert sa.spec.access.account_access.role == AccountAccess.ROLE_DEVELOPER
    assert sa.spec.access.namespace_accesses[ns].permission == NamespaceAccess.PERMISSION_WRITE
    [user] = (await cloud.get_users(GetUsersRequest(email=email))).users
    assert (user.spec.access.account_access.role, user.spec.access.namespace_accesses[ns].permission) == (
        AccountAccess.ROLE_READ, NamespaceAccess.PERMISSION_READ)
    keys = (await cloud.get_api_keys(GetApiKeysRequest(owner_id=sa.id))).api_keys
    assert [k.spec.display_name for k in keys] == ["ci"]

    plan = await tf.run("plan", "-detailed-exitcode")
    assert plan.returncode == 0, "a second plan must show no changes:\n" + plan.stdout[-3000:] + plan.stderr[-2000:]

    created_time = got.created_time
    updated = await tf.run("apply", "-auto-approve", retention="5")
    assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr[-3000:]
    assert "0 added, 1 changed, 0 destroyed" in updated.stdout, updated.stdout[-2000:]
    got = (await cloud.get_namespace(GetNamespaceRequest(namespace=ns))).namespace
    assert (got.spec.retention_days, got.created_time) == (5, created_time), "updated in place, not replaced"

    # Renaming the search attribute: the provider's in-place update calls RenameCustomSearchAttribute.
    renamed = await tf.run("apply", "-auto-approve", retention="5", attribute="ClientId")
    assert renamed.returncode == 0, renamed.stdout[-3000:] + renamed.stderr[-3000:]
    assert "0 added, 1 changed, 0 destroyed" in renamed.stdout, renamed.stdout[-2000:]
    on_server = await (await Client.connect(settings.temporal_address)).operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=ns))
    assert on_server.custom_attributes["ClientId"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    # The provider then updates the namespace with the spec it read before the rename, which still names
    # CustomerId: that adds CustomerId again, as a new (empty) attribute.
    assert set(on_server.custom_attributes) == {"ClientId", "CustomerId"}

    destroyed = await tf.run("destroy", "-auto-approve", retention="5", attribute="ClientId")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-3000:]
    assert "6 destroyed" in destroyed.stdout, destroyed.stdout[-2000:]
    assert (await refused(cloud.get_namespace(GetNamespaceRequest(namespace=ns)))).status == RPCStatusCode.NOT_FOUND
    assert sa.id not in {s.id for s in (await cloud.get_service_accounts(GetServiceAccountsRequest())).service_account}
    assert not (await cloud.get_users(GetUsersRequest(email=email))).users
    assert not (await cloud.get_api_keys(GetApiKeysRequest(owner_id=sa.id))).api_keys
