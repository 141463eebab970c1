"""Temporal's own programs built from their published Go modules, once per machine, into a cache outside the repo.

Nothing is vendored or downloaded prebuilt: ``go install <package>@<version>`` fetches the module's source through
the Go module proxy and compiles it with this machine's toolchain (``GOTOOLCHAIN=local``: no toolchain download).
The versions are pinned here and in ``charts/temporal-values.yaml`` (server image tag) so that the local platform
and production run the same server.

The repo's own small Go programs (:data:`LOCAL_MODULES`, e.g. the Go Cloud SDK client the tests run) are built the
same way from their directory's ``go.mod``/``go.sum`` (``-mod=readonly``: the sums are the pins), into a cache entry
named after a hash of their sources, so that a change to them builds them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_VERSION = "v1.32.1"
UI_SERVER_VERSION = "v2.55.0"


@dataclass(frozen=True)
class GoProgram:
    """A ``main`` package of a published Go module, at a pinned version."""

    name: str
    package: str
    version: str
    # Build inside the downloaded module (its own go.mod) instead of `go install <package>@<version>`: for a module
    # whose version list the Go module proxy refuses, which `go install` reads for deprecation notices.
    build_in_module: bool = False

    @property
    def binary_name(self) -> str:
        """What ``go install`` names the binary: the last element of the package path."""
        return self.package.rsplit("/", 1)[1]


TEMPORAL_SERVER = GoProgram("temporal-server", "go.temporal.io/server/cmd/server", SERVER_VERSION)
TEMPORAL_SQL_TOOL = GoProgram("temporal-sql-tool", "go.temporal.io/server/cmd/tools/sql", SERVER_VERSION)
TEMPORAL_UI_SERVER = GoProgram("temporal-ui-server", "github.com/temporalio/ui-server/v2/cmd/server",
                               UI_SERVER_VERSION)
# The last MPL-licensed Terraform CLI whose module installs with `go install` (later ones carry replace
# directives): `terraform fmt` checks infra/terraform offline.
TERRAFORM = GoProgram("terraform", "github.com/hashicorp/terraform", "v1.5.7")
# Temporal's Terraform provider for Temporal Cloud, run against this platform's Cloud Ops API by
# tests/test_terraform_provider.py (a development override: nothing from the Terraform registry). v1.0.0 builds with
# Go 1.26.8; proxy.golang.org answers 403 for the module's version list, hence the build inside the module.
TERRAFORM_PROVIDER_TEMPORALCLOUD = GoProgram("terraform-provider-temporalcloud",
                                             "github.com/temporalio/terraform-provider-temporalcloud", "v1.0.0",
                                             build_in_module=True)
PROGRAMS = (TEMPORAL_SERVER, TEMPORAL_SQL_TOOL, TEMPORAL_UI_SERVER, TERRAFORM, TERRAFORM_PROVIDER_TEMPORALCLOUD)


@dataclass(frozen=True)
class LocalGoModule:
    """A ``main`` package of this repo with its own ``go.mod`` and ``go.sum`` (which pin its dependencies)."""

    name: str
    directory: Path

    def source_hash(self) -> str:
        """A hash of ``go.mod``, ``go.sum`` and the ``.go`` files: the cache key, so any change builds anew."""
        digest = hashlib.sha256()
        for path in sorted([self.directory / "go.mod", self.directory / "go.sum", *self.directory.glob("*.go")]):
            content = path.read_bytes()
            digest.update(f"{path.name}\0{len(content)}\0".encode())
            digest.update(content)
        return digest.hexdigest()[:16]


# Temporal's Go Cloud SDK (go.temporal.io/cloud-sdk, pinned in its go.mod) driving the Cloud Ops API:
# tests/test_go_cloud_sdk.py runs it.
GO_CLOUD_SDK_CLIENT = LocalGoModule("go-cloud-sdk-client", REPO / "tests" / "go_cloud_sdk")
LOCAL_MODULES = (GO_CLOUD_SDK_CLIENT,)


def cache_dir() -> Path:
    """Where built programs live: ``TCLOUD_GO_CACHE``, else ``$XDG_CACHE_HOME/tcloud/go-bin`` (``~/.cache``)."""
    if os.environ.get("TCLOUD_GO_CACHE"):
        return Path(os.environ["TCLOUD_GO_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tcloud" / "go-bin"


def binary_path(program: GoProgram) -> Path:
    return cache_dir() / f"{program.name}-{program.version}" / program.binary_name


def local_binary_path(module: LocalGoModule) -> Path:
    """Where the build of the module's current sources is (or would be) in the cache."""
    return cache_dir() / f"{module.name}-{module.source_hash()}" / module.name


def _go(name: str) -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"building {name} needs Go (1.26.8 or newer) on PATH")
    return go


def _staging_for(path: Path) -> Path:
    """An empty directory beside the binary's, renamed into its place once the build has finished."""
    staging = path.parent.with_name(path.parent.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _run_go(cmd: list[str], *, env: dict[str, str], cwd: str | Path | None, staging: Path) -> None:
    """Run a go command that builds into ``staging``; on failure remove it and raise with go's own words."""
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        where = f" in {cwd}" if cwd else ""
        raise RuntimeError(f"{' '.join(cmd)}{where} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def ensure_local_built(module: LocalGoModule, *, say: Callable[[str], None] = print) -> Path:
    """The module's binary for its current sources, built first if needed (older builds of it are removed).

    Raises:
        RuntimeError: Go is missing, or the module could not be built (with go's own words).
    """
    path = local_binary_path(module)
    if path.exists():
        return path
    go = _go(module.name)
    say(f"building {module.name} from {module.directory} ...")
    started = time.monotonic()
    staging = _staging_for(path)
    # GOFLAGS replaces the one of `go env -w`, hence -buildvcs=false on the command line.
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    cmd = [go, "build", "-trimpath", "-buildvcs=false", "-o", str(staging / module.name), "."]
    _run_go(cmd, env=env, cwd=module.directory, staging=staging)
    for older in cache_dir().glob(f"{module.name}-*"):
        if older != staging:
            shutil.rmtree(older, ignore_errors=True)
    staging.rename(path.parent)
    say(f"built {module.name} in {time.monotonic() - started:.0f}s: {path}")
    return path


def ensure_built(program: GoProgram, *, say: Callable[[str], None] = print) -> Path:
    """The program's binary, built first if this machine has not built this version yet.

    Raises:
        RuntimeError: Go is missing, or the module could not be fetched or built (with go's own words).
    """
    path = binary_path(program)
    if path.exists():
        return path
    go = _go(program.name)
    say(f"building {program.name} {program.version} from {program.package} (once per machine) ...")
    started = time.monotonic()
    staging = _staging_for(path)
    env = {**os.environ, "GOBIN": str(staging), "GOTOOLCHAIN": "local"}
    cmd = [go, "install", f"{program.package}@{program.version}"]
    cwd = None
    if program.build_in_module:
        download = [go, "mod", "download", "-json", f"{program.package}@{program.version}"]
        fetched = subprocess.run(download, env=env, capture_output=True, text=True, check=False)
        if fetched.returncode != 0:
            raise RuntimeError(f"{' '.join(download)} failed ({fetched.returncode}):\n{fetched.stderr[-4000:]}")
        cwd = json.loads(fetched.stdout)["Dir"]
        cmd = [go, "build", "-trimpath", "-o", str(staging / program.binary_name), "."]
    _run_go(cmd, env=env, cwd=cwd, staging=staging)
    # Publish the finished directory in one rename so a killed build never leaves a half-written binary in place.
    shutil.rmtree(path.parent, ignore_errors=True)
    staging.rename(path.parent)
    say(f"built {program.name} in {time.monotonic() - started:.0f}s: {path}")
    return path


def ensure_all(*, say: Callable[[str], None] = print) -> dict[str, Path]:
    built = {p.name: ensure_built(p, say=say) for p in PROGRAMS}
    return built | {m.name: ensure_local_built(m, say=say) for m in LOCAL_MODULES}


def main() -> int:
    for name, path in ensure_all().items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
