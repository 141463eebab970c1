"""The OpenAPI document, built from the live router and what each handler declares with ``@documented``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

# "access-token": an access token of the OpenID provider (api/oidc.py), which the customers' Temporal UI holds.
Auth = Literal["none", "customer", "operator", "signature", "access-token"]
H = TypeVar("H", bound=Callable[..., Any])


@dataclass
class RouteDoc:
    summary: str
    auth: Auth
    request: type[BaseModel] | dict[str, Any] | None = None
    response: type[BaseModel] | dict[str, Any] | None = None
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)  # name -> description
    tags: tuple[str, ...] = ()


def documented(summary: str, *, auth: Auth, request: type[BaseModel] | dict[str, Any] | None = None,
               response: type[BaseModel] | dict[str, Any] | None = None, status: int = 200,
               query: dict[str, str] | None = None, tags: tuple[str, ...] = ()) -> Callable[[H], H]:
    """Attach the route's documentation to its handler; every route must carry one."""

    def wrap(handler: H) -> H:
        handler.__route_doc__ = RouteDoc(summary, auth, request, response, status, query or {}, tags)  # type: ignore[attr-defined]
        return handler

    return wrap


def _schema(obj: type[BaseModel] | dict[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        return {"type": "object"}
    if isinstance(obj, dict):
        return obj
    return obj.model_json_schema(ref_template="#/components/schemas/{model}")


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "customer": [{"apiKey": []}], "operator": [{"operatorToken": []}], "none": [], "signature": [],
    "access-token": [{"oidcAccessToken": []}],
}


def routes_of(app: web.Application) -> list[tuple[str, str, Any]]:
    """(METHOD, path, handler) of every documented-or-not route, HEAD and static files left out."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if route.method in ("HEAD", "*") or path is None or "directory" in info:
            continue
        out.append((route.method, path, route.handler))
    return out


def build(app: web.Application, *, title: str = "tcloud API", version: str = "1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    for method, path, handler in routes_of(app):
        doc: RouteDoc | None = getattr(handler, "__route_doc__", None)
        if doc is None:
            continue
        op: dict[str, Any] = {
            "summary": doc.summary,
            "operationId": f"{method.lower()}_{handler.__name__}",
            "tags": list(doc.tags),
            "security": _SECURITY[doc.auth],
            "responses": {
                str(doc.status): {"description": "OK",
                                  "content": {"application/json": {"schema": _schema(doc.response)}}},
                "default": {"description": "Error",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in _path_params(path)]
        params += [{"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
                   for n, d in doc.query.items()]
        if params:
            op["parameters"] = params
        if doc.request is not None:
            schema = _schema(doc.request)
            components.update(schema.pop("$defs", {}))
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if isinstance(doc.response, type):
            components.update(_schema(doc.response).pop("$defs", {}))
        paths.setdefault(path, {})[method.lower()] = op
    components["Error"] = {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "details": {}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a customer API key"},
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "the operator token"},
                "oidcAccessToken": {"type": "http", "scheme": "bearer",
                                    "description": "an access token from POST /oauth2/token"},
            },
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
