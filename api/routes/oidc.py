"""The OpenID Connect provider's endpoints (api/oidc.py) and the customers' Temporal UI's way back to the portal.

``GET /oauth2/authorize`` checks the client's request (client, exact redirect URI, response type, scope, nonce,
PKCE) and shows the sign-in page; the page posts the customer's API key back to ``POST /oauth2/authorize``, which
issues the code for the key's owner (a user or a service account) and redirects to the client. A request whose
client or redirect URI is wrong is answered here (an error page, or JSON to a non-browser) and never redirected;
any other error goes back to the client's redirect URI as OAuth says.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import secrets
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web
from authlib.oauth2.rfc6749 import OAuth2Error

from api.appkeys import SETTINGS
from api.auth import customer_of_key
from api.errors import ApiError
from api.oidc import (
    AUTHORIZE_PATH,
    DISCOVERY_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    BadParameter,
    Request,
    SignedIn,
    provider_of,
    read_request,
)
from api.openapi import documented
from api.throttle import client_address, throttle_of

routes = web.RouteTableDef()
TAGS = ("sign-in",)
CSRF_COOKIE = "tcloud_signin"
_AUTHORIZE_QUERY = {
    "response_type": "code", "client_id": "a registered client", "redirect_uri": "exactly as registered",
    "scope": "openid profile email", "state": "returned as given", "nonce": "required with openid",
    "code_challenge": "PKCE, S256 (required for public clients)", "code_challenge_method": "S256",
}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{html.escape(title)} · tcloud</title>
  <link rel="stylesheet" href="/static/common.css">
</head>
<body>
  <header><h1>tcloud</h1></header>
  <main id="main">{body}</main>
</body>
</html>
"""
    return web.Response(text=text, content_type="text/html", status=status, headers=_PAGE_HEADERS)


def _error(request: web.Request, status: int, error: str, description: str) -> web.Response:
    """An error answered here (not sent back to the client): a page for a browser, JSON otherwise."""
    if _wants_html(request):
        return _page("Sign-in refused", f"""<section class="card" data-testid="oauth-error">
  <h2>This sign-in request was refused</h2>
  <p><code data-testid="oauth-error-code">{html.escape(error)}</code>: {html.escape(description)}</p>
  <p class="muted">Start again from the Temporal UI or the portal.</p>
</section>""", status=status)
    return web.json_response({"code": status, "message": description, "error": error,
                              "error_description": description}, status=status, headers={"Cache-Control": "no-store"})


def _sign_in_page(request: web.Request, authorization_request: str, client_id: str, *, csrf: str,
                  message: str | None = None, status: int = 200) -> web.Response:
    notice = (f'<p class="state error" role="alert" data-testid="signin-error">{html.escape(message)}</p>'
              if message else "")
    body = f"""<section class="card">
  <h2>Sign in to the Temporal UI</h2>
  <p class="muted" id="signin-help">Paste one of your API keys (the portal's API keys page): it signs in its
  owner, your user or a service account, with that owner's access. The Temporal UI ({html.escape(client_id)}) will
  show only the namespaces it may use.</p>
  <form class="inline" method="post" action="{AUTHORIZE_PATH}" data-testid="oidc-signin">
    <input type="hidden" name="authorization_request" value="{html.escape(authorization_request)}">
    <input type="hidden" name="csrf" value="{html.escape(csrf)}">
    <label for="api-key">API key <input id="api-key" name="api_key" type="password" autocomplete="off" required
      size="48" aria-describedby="signin-help"></label>
    <button type="submit">Sign in</button>
  </form>
  {notice}
</section>"""
    response = _page("Sign in", body, status=status)
    secure = urlsplit(request.app[SETTINGS].oidc_issuer).scheme == "https"
    response.set_cookie(CSRF_COOKIE, csrf, path=AUTHORIZE_PATH, httponly=True, samesite="Strict", secure=secure,
                        max_age=1800)
    return response


async def _checked_authorization(request: web.Request, oauth: Request) -> tuple[object | None, web.Response | None]:
    """The grant of a valid authorization request, or the answer to an invalid one."""
    provider = provider_of(request.app)
    try:
        return await asyncio.to_thread(provider.authorization_check, oauth), None
    except OAuth2Error as err:
        if err.redirect_uri:  # the client and its redirect URI are known: the error goes back to it
            return None, await asyncio.to_thread(provider.error_redirect, oauth, err)
        return None, _error(request, err.status_code or 400, err.error, err.get_error_description() or err.error)
    except ValueError:  # authlib refuses to word an error around characters OAuth forbids (e.g. in response_type)
        return None, _error(request, 400, "invalid_request", "the authorization request has characters OAuth forbids")


@routes.get(AUTHORIZE_PATH)
@documented("OpenID Connect authorization endpoint: checks the client's request and shows the sign-in page (HTML)",
            auth="none", query=_AUTHORIZE_QUERY, response={"type": "string"}, tags=TAGS)
async def authorize_page(request: web.Request) -> web.StreamResponse:
    provider = provider_of(request.app)
    try:
        oauth = await read_request(request, provider.issuer, form=False)
    except BadParameter as err:
        return _error(request, 400, "invalid_request", str(err))
    _, answer = await _checked_authorization(request, oauth)
    if answer is not None:
        return answer
    return _sign_in_page(request, request.query_string, oauth.payload.client_id, csrf=secrets.token_urlsafe(24))


@routes.post(AUTHORIZE_PATH)
@documented("The sign-in page's form (authorization_request, csrf, api_key, form-encoded): signs in with an API key, "
            "then redirects to the client with a code", auth="none", response={"type": "string"}, tags=TAGS)
async def authorize_submit(request: web.Request) -> web.StreamResponse:
    provider = provider_of(request.app)
    form = await request.post() if request.content_type == "application/x-www-form-urlencoded" else {}
    csrf, original, api_key = (str(form.get(name, "")) for name in ("csrf", "authorization_request", "api_key"))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not csrf or not hmac.compare_digest(csrf.encode(), cookie.encode()):
        return _error(request, 400, "invalid_request",
                      "the sign-in form is not from this page or has expired: start again from the Temporal UI")
    try:
        query = parse_qsl(original, keep_blank_values=True, max_num_fields=50)
        oauth = Request("GET", f"{provider.issuer}{AUTHORIZE_PATH}?{urlencode(query)}", request.headers,
                        query, [])
        grant, answer = await _checked_authorization(request, oauth)
    except (BadParameter, ValueError) as err:
        return _error(request, 400, "invalid_request", str(err))
    if answer is not None:
        return answer
    try:
        customer = await customer_of_key(request.app, api_key.strip() or None, client_address(request))
    except ApiError as err:
        message = ("That API key is not valid: it is unknown, revoked or expired." if err.status == 401
                   else err.message)
        return _sign_in_page(request, original, oauth.payload.client_id, csrf=secrets.token_urlsafe(24),
                             message=message, status=err.status)
    user = SignedIn(customer.account_id, customer.key_id, int(time.time()))
    response = await asyncio.to_thread(provider.authorize, oauth, grant, user)
    response.del_cookie(CSRF_COOKIE, path=AUTHORIZE_PATH)
    return response


@routes.post(TOKEN_PATH)
@documented("OpenID Connect token endpoint (form-encoded: grant_type authorization_code with code, redirect_uri and "
            "code_verifier, or refresh_token; client_secret_basic or client_secret_post)", auth="none",
            response={"type": "object"}, tags=TAGS)
async def token(request: web.Request) -> web.StreamResponse:
    provider = provider_of(request.app)
    client = client_address(request)
    wait = throttle_of(request.app).retry_after(client)
    if wait is not None:
        raise ApiError(429, f"too many failed authentications from this address: retry in {wait} s",
                       headers={"Retry-After": str(wait)})
    try:
        oauth = await read_request(request, provider.issuer, form=True)
    except BadParameter as err:
        return _error(request, 400, "invalid_request", str(err))
    response = await asyncio.to_thread(provider.token, oauth)
    if response.status == 401:  # invalid_client: a wrong client secret counts as a failed authentication
        throttle_of(request.app).record_failure(client)
    return response


@routes.get(USERINFO_PATH)
@documented("OpenID Connect userinfo: who signed in (sub, name, email: the API key's user or service account) "
            "for an access token of this provider", auth="access-token", response={"type": "object"}, tags=TAGS)
async def userinfo(request: web.Request) -> web.StreamResponse:
    provider = provider_of(request.app)
    try:
        oauth = await read_request(request, provider.issuer, form=False)
    except BadParameter as err:
        return _error(request, 400, "invalid_request", str(err))
    return await asyncio.to_thread(provider.userinfo, oauth)


@routes.get(DISCOVERY_PATH)
@documented("OpenID Connect discovery document of the provider the customers' Temporal UI signs in with",
            auth="none", response={"type": "object"}, tags=TAGS)
async def discovery(request: web.Request) -> web.Response:
    return web.json_response(provider_of(request.app).metadata(), headers={"Cache-Control": "max-age=300"})


@routes.get("/ui-link")
@documented("The link back to the portal shown in the customers' Temporal UI's top bar (HTML, framed by the UI)",
            auth="none", response={"type": "string"}, tags=TAGS)
async def ui_link(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    portal = html.escape(settings.oidc_issuer.rstrip("/") + "/#/namespaces")
    parts = urlsplit(settings.customer_ui_url)
    ui_origin = f"{parts.scheme}://{parts.netloc}"
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tcloud portal</title>
<style>
  body {{ margin: 0; font: 14px system-ui, sans-serif; display: flex; align-items: center; height: 100vh; }}
  a {{ color: inherit; text-decoration: none; border: 1px solid currentColor; border-radius: 4px;
       padding: 4px 10px; white-space: nowrap; color: #7c3aed; }}
</style></head>
<body><a href="{portal}" target="_blank" rel="noopener" data-testid="portal-link">tcloud portal ↗</a></body></html>
"""
    return web.Response(text=text, content_type="text/html", headers={
        "Cache-Control": "max-age=300", "Content-Security-Policy": f"frame-ancestors {ui_origin}; default-src 'none'; "
                                                                   "style-src 'unsafe-inline'"})
