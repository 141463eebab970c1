"""Custom search attributes of a tenant namespace: their names and types, and what an update may change (no I/O).

Types are spelled as Temporal Cloud's ``NamespaceSpec.custom_search_attributes`` values (``Keyword``, ``Text``,
``Int``, ``Double``, ``Bool``, ``Datetime``, ``KeywordList``). Like Temporal Cloud, an update adds attributes and
never removes one or changes its type (visibility keeps the values already indexed under them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TYPES = ("Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList")
_BY_WORD = {t.lower(): t for t in TYPES} | {"keyword_list": "KeywordList", "date_time": "Datetime"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_ATTRIBUTES = 100


def canonical_type(word: str) -> str | None:
    """The type a value of ``custom_search_attributes`` names (case-insensitive), or None."""
    return _BY_WORD.get(word.strip().lower())


def name_problem(name: str) -> str | None:
    """What is wrong with a custom search attribute's name, or None (the server also refuses its own names)."""
    if not _NAME.fullmatch(name):
        return (f"search attribute name {name!r} must start with a letter and have at most 64 letters, digits and "
                "'_'")
    if name.lower().startswith("temporal"):
        return f"search attribute name {name!r}: names starting with 'Temporal' are reserved"
    return None


def merged_request(*specs: Mapping[str, str]) -> dict[str, str]:
    """One map of ``{name: type}`` from the spec's maps (the deprecated string one and the typed one, both already
    in type words), checked.

    Raises:
        ValueError: a bad name, or one name given two types.
    """
    out: dict[str, str] = {}
    for spec in specs:
        for name, kind in spec.items():
            problem = name_problem(name)
            if problem:
                raise ValueError(problem)
            if name in out and out[name] != kind:
                raise ValueError(f"search attribute {name} is given two types, {out[name]} and {kind}")
            out[name] = kind
    if len(out) > MAX_ATTRIBUTES:
        raise ValueError(f"a namespace has at most {MAX_ATTRIBUTES} custom search attributes")
    return out


def added(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The attributes ``wanted`` adds to ``current``.

    Raises:
        ValueError: when ``wanted`` leaves one out or changes a type (attributes are never removed or retyped).
    """
    missing = sorted(set(current) - set(wanted))
    if missing:
        raise ValueError(f"custom search attributes cannot be removed (or renamed): {', '.join(missing)}")
    retyped = sorted(n for n in current if wanted[n] != current[n])
    if retyped:
        raise ValueError(f"the type of a custom search attribute cannot change: {', '.join(retyped)}")
    return {n: k for n, k in wanted.items() if n not in current}
