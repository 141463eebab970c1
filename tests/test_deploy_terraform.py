"""infra/terraform parsed with python-hcl2: the budget ($290, alerts at 80/95/100 %), the node pool's autoscaling
bounds (1 to 3), the backup bucket's lifecycle rule, and references that `terraform validate` would reject.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from launcher import gobuild
from tcloud.settings import Settings
from tests.test_deploy_artifacts import KUBERNETES_VERSION

TERRAFORM = Path(__file__).resolve().parents[1] / "infra" / "terraform"
OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@functools.cache
def parse() -> dict[str, list[Any]]:
    """Every top-level block of every .tf file, merged by block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as f:
            for block_type, blocks in hcl2.load(f, serialization_options=OPTIONS).items():
                merged.setdefault(block_type, []).extend(blocks)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in parse()["variable"] for name, body in block.items()}


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [block[kind][name] for block in parse()["resource"] if kind in block and name in block[kind]]
    assert len(found) == 1, f"expected one resource {kind}.{name}"
    result: dict[str, Any] = found[0]
    return result


def default_of(expression: str) -> Any:
    """The default of the variable that ``${var.NAME}`` refers to."""
    match = re.fullmatch(r"\$\{var\.(\w+)\}", expression)
    assert match, f"{expression!r} is not a plain variable reference"
    return variables()[match.group(1)]["default"]


def test_budget_is_290_monthly_on_the_compartment() -> None:
    budget = resource("oci_budget_budget", "monthly")
    assert default_of(budget["amount"]) == 290
    assert budget["reset_period"] == "MONTHLY"
    assert budget["target_type"] == "COMPARTMENT"
    assert budget["targets"] == ["${var.compartment_ocid}"]


def test_budget_alerts_at_80_95_and_100_percent_of_actual_spend() -> None:
    rule = resource("oci_budget_alert_rule", "spend")
    assert "var.budget_alert_thresholds" in rule["for_each"]
    assert default_of("${var.budget_alert_thresholds}") == [80, 95, 100]
    assert rule["threshold"] == "${tonumber(each.value)}"
    assert (rule["type"], rule["threshold_type"]) == ("ACTUAL", "PERCENTAGE")
    assert rule["budget_id"] == "${oci_budget_budget.monthly.id}"
    assert "var.budget_alert_recipients" in rule["recipients"]


def test_node_pool_autoscales_between_one_and_three_nodes() -> None:
    pool = resource("oci_containerengine_node_pool", "main")
    assert default_of(pool["node_config_details"][0]["size"]) == 1
    addon = resource("oci_containerengine_addon", "cluster_autoscaler")
    assert addon["addon_name"] == "ClusterAutoscaler"
    config = {c["key"]: c["value"] for c in addon["configurations"]}
    nodes = re.fullmatch(r"\$\{var\.(\w+)\}:\$\{var\.(\w+)\}:\$\{(.+)\}", config["nodes"])
    assert nodes, config["nodes"]
    low, high, pool_id = nodes.groups()
    assert (variables()[low]["default"], variables()[high]["default"]) == (1, 3)
    assert pool_id == "oci_containerengine_node_pool.main.id"
    # The autoscaler owns the size after creation.
    assert "node_config_details[0].size" in str(pool["lifecycle"])


def test_cluster_runs_the_kubernetes_version_the_chart_is_validated_against() -> None:
    version = default_of(resource("oci_containerengine_cluster", "main")["kubernetes_version"])
    assert version.removeprefix("v").rsplit(".", 1)[0] == KUBERNETES_VERSION


def test_backup_bucket_is_private_with_a_lifecycle_rule_behind_the_platforms_retention() -> None:
    bucket = resource("oci_objectstorage_bucket", "backups")
    assert bucket["access_type"] == "NoPublicAccess"
    assert default_of(bucket["name"]) == Settings().oci_bucket
    rule = resource("oci_objectstorage_object_lifecycle_policy", "backups")["rules"][0]
    assert (rule["action"], rule["time_unit"], rule["is_enabled"]) == ("DELETE", "DAYS", True)
    assert default_of(rule["time_amount"]) > Settings().backup_retention_days


def test_every_reference_is_declared() -> None:
    """What `terraform validate` would catch without the provider: undeclared variables, resources, data."""
    tree = parse()
    text = "\n".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    declared_vars = set(variables())
    for name in set(re.findall(r"\bvar\.(\w+)", text)):
        assert name in declared_vars, f"var.{name} is not declared"
    resources = {f"{kind}.{name}" for block in tree["resource"] for kind, named in block.items() for name in named}
    data = {f"{kind}.{name}" for block in tree["data"] for kind, named in block.items() for name in named}
    for ref in set(re.findall(r"(?<![\w.])(oci_\w+\.\w+)", text)):
        assert ref in resources, f"{ref} is not a declared resource"
    for ref in set(re.findall(r"\bdata\.(oci_\w+\.\w+)", text)):
        assert ref in data, f"data.{ref} is not declared"
    for name in set(re.findall(r"\blocal\.(\w+)", text)):
        assert any(name in block for block in tree["locals"]), f"local.{name} is not declared"


def test_variables_and_outputs_are_documented() -> None:
    for name, body in variables().items():
        assert body.get("description"), f"variable {name} has no description"
    outputs = {name: body for block in parse()["output"] for name, body in block.items()}
    assert {"cluster_id", "node_pool_id", "objectstorage_namespace", "backup_bucket", "region", "budget_id"} <= set(
        outputs)
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} has no description"
    readme = (TERRAFORM / "README.md").read_text()
    assert "terraform apply" in readme and "deploy.sh oke --apply" in readme


def test_terraform_fmt_is_clean() -> None:
    terraform = gobuild.binary_path(gobuild.TERRAFORM)
    if not terraform.exists():
        pytest.fail(f"{terraform} is missing: ./deploy.sh local builds it from its Go module")
    result = subprocess.run([str(terraform), "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
