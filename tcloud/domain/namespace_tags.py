"""Namespace tags: key-value labels on a namespace, with the limits Temporal Cloud documents (no I/O).

At most 10 tags a namespace; keys and values 1 to 63 characters of lowercase letters, digits, ``.``, ``_``, ``-``
and ``@``. Tags change nothing about the namespace's behaviour and are no place for secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MAX_TAGS = 10
_TEXT = re.compile(r"[a-z0-9._@-]{1,63}")


def tag_problem(key: str, value: str | None = None) -> str | None:
    """What is wrong with a tag key (and its value), or None."""
    if not _TEXT.fullmatch(key):
        return f"tag key {key!r} must be 1 to 63 characters of a-z, 0-9, '.', '_', '-' and '@'"
    if value is not None and not _TEXT.fullmatch(value):
        return f"the value of tag {key!r} must be 1 to 63 characters of a-z, 0-9, '.', '_', '-' and '@'"
    return None


def changed_tags(current: Mapping[str, str], upsert: Mapping[str, str], remove: Iterable[str]) -> dict[str, str]:
    """The tags after removing ``remove`` and setting ``upsert``.

    Raises:
        ValueError: saying what is wrong (a bad key or value, a key both set and removed, more than MAX_TAGS).
    """
    removed = set(remove)
    for key in sorted(removed):
        problem = tag_problem(key)
        if problem:
            raise ValueError(f"tagsToRemove: {problem}")
    for key in sorted(upsert):
        problem = tag_problem(key, upsert[key])
        if problem:
            raise ValueError(problem)
    both = sorted(removed & set(upsert))
    if both:
        raise ValueError(f"tags both set and removed: {', '.join(both)}")
    tags = {k: v for k, v in current.items() if k not in removed}
    tags.update(upsert)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a namespace has at most {MAX_TAGS} tags (this would make {len(tags)})")
    return tags
