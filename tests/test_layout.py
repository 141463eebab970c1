"""The layout stays what HACKING.md says: SQL is written only in the store layer and the migrations."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("api", "activities", "workflows", "workers", "tcloud", "launcher")
SQL_HOMES = (REPO / "tcloud" / "store", REPO / "tcloud" / "migrations")
SQL = re.compile(
    r"\bselect\b.+\bfrom\b|\binsert\s+into\b|\bupdate\s+\w+\s+set\b|\bdelete\s+from\b|\bon\s+conflict\b"
    r"|\b(create|alter|drop|truncate)\s+(table|database|index|system|schema)\b|\bshow\s+max_connections\b"
    r"|\bpg_advisory_\w+\b|\bto_regclass\b|\bselect\s+1\b",
    re.IGNORECASE | re.DOTALL)


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, first line) of every string literal in ``path`` that reads as SQL."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.STRING and SQL.search(tok.string):
            found.append((tok.start[0], tok.string.strip().splitlines()[0][:80]))
    return found


def product_files() -> list[Path]:
    return [p for package in PRODUCT for p in (REPO / package).rglob("*.py")
            if not any(home in p.parents for home in SQL_HOMES)]


def test_sql_is_written_only_in_the_store_layer() -> None:
    outside = [f"{p.relative_to(REPO)}:{line}: {text}" for p in product_files() for line, text in sql_strings(p)]
    assert not outside, "SQL outside tcloud/store and tcloud/migrations:\n" + "\n".join(outside)


def test_the_check_sees_sql() -> None:
    sample = REPO / "tcloud" / "store" / "__init__.py"
    assert sql_strings(sample) == []
    probe = Path(__file__).with_name("_layout_probe.py")
    try:
        probe.write_text('Q = """SELECT id\n  FROM accounts"""\nR = "insert into t values (1)"\nS = "a selection"\n')
        assert [line for line, _ in sql_strings(probe)] == [1, 3]
    finally:
        probe.unlink()


def _imports(path: Path) -> set[str]:
    """Top-level package names ``path`` imports (``from x.y import z`` and ``import x``), at any indentation."""
    found = set()
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(?:from|import)\s+([\w.]+)", line)
        if match and not line.lstrip().startswith("from __future__"):
            found.add(match.group(1))
    return found


def test_the_shared_package_imports_no_outer_layer() -> None:
    outer = ("api", "activities", "workflows", "workers", "launcher")
    wrong = [f"{p.relative_to(REPO)} imports {name}" for p in (REPO / "tcloud").rglob("*.py")
             for name in _imports(p) if name.split(".")[0] in outer]
    assert not wrong, "\n".join(wrong)


def test_the_domain_does_no_io() -> None:
    io = ("asyncpg", "aiohttp", "stripe", "temporalio", "oci", "prometheus_api_client", "aiosmtplib", "socket",
          "subprocess", "tcloud.store", "tcloud.platform", "tcloud.adapters", "tcloud.services")
    wrong = [f"{p.relative_to(REPO)} imports {name}" for p in (REPO / "tcloud" / "domain").rglob("*.py")
             for name in _imports(p) if any(name == m or name.startswith(m + ".") for m in io)]
    assert not wrong, "\n".join(wrong)
