"""The reliability and security suite, long variant: more accounts, more faults, more fuzzing; prints its figures.

Runs the suite's test modules (and, with --with-kill-tests, the capabilities' kill -9 tests) under pytest with
the slow variants selected, against real Temporal, PostgreSQL, Prometheus and localstripe started by the test
fixtures, then prints the figures the suite recorded and the wall time.

    .venv/bin/python bench/reliability_suite.py [--accounts 150] [--rounds 5] [--fuzz-examples 40]
        [--grpc-fuzz-examples 300] [--with-kill-tests]

Every figure is a count of checks that held: the run fails (non-zero exit) if any invariant broke.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = ["tests/test_security_throttle.py", "tests/test_security_secrets.py", "tests/test_authz_matrix.py",
         "tests/test_fuzz_api.py", "tests/test_cloud_authz_matrix.py", "tests/test_cloud_fuzz.py",
         "tests/test_reliability_restarts.py"]
KILL_TESTS = ["tests/test_namespaces_crash.py", "tests/test_billing_crash.py", "tests/test_backup_crash.py",
              "tests/test_usage_faults.py"]


def figures_of(output: str) -> dict[str, str]:
    """The ``name: value`` lines of pytest's "figures" summary section."""
    section = re.split(r"=+ figures =+\n", output)
    if len(section) < 2:
        return {}
    out = {}
    for line in section[1].splitlines():
        if line.startswith("="):
            break
        name, sep, value = line.partition(": ")
        if sep:
            out[name] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=150, help="accounts billed through the faults")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (Temporal restart, Postgres crash)")
    parser.add_argument("--fuzz-examples", type=int, default=40, help="cases per operation, identity and mode")
    parser.add_argument("--grpc-fuzz-examples", type=int, default=300,
                        help="random messages per Cloud Ops gRPC method (a quarter as many random byte strings)")
    parser.add_argument("--with-kill-tests", action="store_true", help="also run the capabilities' kill -9 tests")
    args = parser.parse_args()
    env = {**os.environ, "TCLOUD_RELIABILITY_ACCOUNTS": str(args.accounts),
           "TCLOUD_RELIABILITY_ROUNDS": str(args.rounds), "TCLOUD_FUZZ_EXAMPLES": str(args.fuzz_examples),
           "TCLOUD_GRPC_FUZZ_EXAMPLES": str(args.grpc_fuzz_examples)}
    files = SUITE + (KILL_TESTS if args.with_kill_tests else [])
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "slow or not slow", "-o", "timeout=3600",
                           *files], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    print(f"reliability suite (long): {len(files)} modules, {args.accounts} accounts, {args.rounds} fault rounds, "
          f"{args.fuzz_examples} fuzz cases per operation/identity/mode, {args.grpc_fuzz_examples} per gRPC method")
    for name, value in sorted(figures_of(proc.stdout).items()):
        print(f"  {name}: {value}")
    print(f"  wall time: {elapsed:.0f} s")
    print(f"  pytest: {summary[-1] if summary else 'no summary'}")
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
