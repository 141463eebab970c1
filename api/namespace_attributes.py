"""A namespace's tags and custom search attributes in Cloud Ops messages: read from requests (checked, 400 on what
is wrong) and written into a ``Namespace`` from its row (``tags`` and ``search_attributes`` are jsonb maps)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from temporalio.api.cloud.namespace.v1 import Namespace, NamespaceSpec

from api.errors import ApiError
from tcloud.domain import namespace_tags, search_attributes

_ENUM_TYPE: dict[str, NamespaceSpec.SearchAttributeType.ValueType] = {
    "Text": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_TEXT,
    "Keyword": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_KEYWORD,
    "Int": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_INT,
    "Double": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_DOUBLE,
    "Bool": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_BOOL,
    "Datetime": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_DATETIME,
    "KeywordList": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_KEYWORD_LIST,
}
_TYPE_OF_ENUM = {value: word for word, value in _ENUM_TYPE.items()}


def json_map(value: Any) -> dict[str, str]:
    """A jsonb map column as asyncpg returns it (its JSON text), as a dict."""
    if isinstance(value, str):
        loaded: dict[str, str] = json.loads(value)
        return loaded
    return dict(value or {})


def requested_search_attributes(spec: NamespaceSpec) -> dict[str, str] | None:
    """The custom search attributes a spec asks for (``search_attributes`` and the older
    ``custom_search_attributes`` together), or None when it names none."""
    if not spec.custom_search_attributes and not spec.search_attributes:
        return None
    older: dict[str, str] = {}
    for name, word in spec.custom_search_attributes.items():
        kind = search_attributes.canonical_type(word)
        if kind is None:
            raise ApiError(400, f"spec.customSearchAttributes.{name}: type {word!r} is not one of "
                                f"{', '.join(search_attributes.TYPES)}")
        older[name] = kind
    typed: dict[str, str] = {}
    for name, value in spec.search_attributes.items():
        if value not in _TYPE_OF_ENUM:
            raise ApiError(400, f"spec.searchAttributes.{name}: the type must be one of the SEARCH_ATTRIBUTE_TYPE_ "
                                "values other than UNSPECIFIED")
        typed[name] = _TYPE_OF_ENUM[value]
    try:
        return search_attributes.merged_request(older, typed)
    except ValueError as err:
        raise ApiError(400, f"spec: {err}") from err


def search_attributes_after(current: Mapping[str, str], spec: NamespaceSpec) -> dict[str, str] | None:
    """All of a namespace's custom search attributes after an update with ``spec``, or None when it adds none (a
    spec that names none leaves them as they are); 400 when it would remove or retype one."""
    wanted = requested_search_attributes(spec)
    if wanted is None:
        return None
    try:
        new = search_attributes.added(current, wanted)
    except ValueError as err:
        raise ApiError(400, f"spec: {err} (RenameCustomSearchAttribute is not supported by this platform)") from err
    return {**current, **new} if new else None


def renamed_search_attributes(current: Mapping[str, str], existing: str, new: str) -> dict[str, str]:
    """A namespace's custom search attributes after renaming ``existing`` to ``new`` (its type kept), checked."""
    if existing not in current:
        raise ApiError(400, f"existingCustomSearchAttributeName: the namespace has no custom search attribute "
                            f"{existing!r}")
    problem = search_attributes.name_problem(new)
    if problem:
        raise ApiError(400, f"newCustomSearchAttributeName: {problem}")
    if new in current:
        raise ApiError(400, f"newCustomSearchAttributeName: the namespace already has {new!r}")
    return {(new if name == existing else name): kind for name, kind in current.items()}


def checked_tags(tags: Mapping[str, str], field: str = "tags") -> dict[str, str]:
    """Tags of a new namespace, checked."""
    try:
        return namespace_tags.changed_tags({}, tags, ())
    except ValueError as err:
        raise ApiError(400, f"{field}: {err}") from err


def changed_tags(current: Mapping[str, str], upsert: Mapping[str, str], remove: Iterable[str]) -> dict[str, str]:
    """A namespace's tags after an UpdateNamespaceTags, checked."""
    try:
        return namespace_tags.changed_tags(current, upsert, remove)
    except ValueError as err:
        raise ApiError(400, str(err)) from err


def fill(namespace: Namespace, row: Mapping[str, Any]) -> None:
    """Write the row's tags and custom search attributes into ``namespace`` (both spellings of the latter)."""
    for name, kind in sorted(json_map(row["search_attributes"]).items()):
        namespace.spec.custom_search_attributes[name] = kind
        namespace.spec.search_attributes[name] = _ENUM_TYPE[kind]
    for key, value in sorted(json_map(row["tags"]).items()):
        namespace.tags[key] = value
