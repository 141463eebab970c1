"""A local OCI Object Storage for tests: the calls the backup store uses, every request's signature checked.

It verifies the ``authorization: Signature ...`` header against the public key of the test's API key (the
same draft-cavage HTTP signature the ``oci`` SDK sends), so an unsigned or wrongly signed request fails 401.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NAMESPACE = "tcloudtest"
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class ApiKey:
    """An OCI API key and the config file that points the SDK at it."""

    private_key: rsa.RSAPrivateKey
    fingerprint: str
    key_file: Path
    config_file: Path
    tenancy: str = "ocid1.tenancy.oc1..tcloudtest"
    user: str = "ocid1.user.oc1..tcloudtest"

    @property
    def key_id(self) -> str:
        return f"{self.tenancy}/{self.user}/{self.fingerprint}"


def make_api_key(directory: Path, *, region: str = "eu-frankfurt-1") -> ApiKey:
    """Generate an RSA key, its PEM file and an OCI config file (profile DEFAULT) in ``directory``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.md5(der).hexdigest()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, 32, 2))
    key_file = directory / "oci_api_key.pem"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    api_key = ApiKey(key, fingerprint, key_file, directory / "oci_config")
    api_key.config_file.write_text(
        "[DEFAULT]\n"
        f"user={api_key.user}\nfingerprint={fingerprint}\ntenancy={api_key.tenancy}\n"
        f"region={region}\nkey_file={key_file}\n")
    return api_key


@dataclass
class StoredBlob:
    data: bytes
    metadata: dict[str, str]
    etag: str


@dataclass
class Upload:
    name: str
    metadata: dict[str, str]
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)


@dataclass
class FakeObjectStorage:
    """In-memory buckets behind an aiohttp app; ``requests`` logs (method, path, signature verified)."""

    api_key: ApiKey
    page_size: int = 1000
    objects: dict[tuple[str, str], StoredBlob] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    committed_multipart: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_signature], client_max_size=1024**3)
        app.router.add_get("/n/", self._namespace)
        app.router.add_get("/n", self._namespace)
        base = "/n/{ns}/b/{bucket}"
        app.router.add_put(base + "/o/{name:.+}", self._put)
        app.router.add_get(base + "/o/{name:.+}", self._get, allow_head=False)
        app.router.add_head(base + "/o/{name:.+}", self._head)
        app.router.add_delete(base + "/o/{name:.+}", self._delete)
        app.router.add_get(base + "/o", self._list)
        app.router.add_get(base + "/o/", self._list)
        app.router.add_post(base + "/u", self._create_upload)
        app.router.add_put(base + "/u/{name:.+}", self._upload_part)
        app.router.add_post(base + "/u/{name:.+}", self._commit)
        app.router.add_delete(base + "/u/{name:.+}", self._abort)
        return app

    # --- signature ---------------------------------------------------------------------------------

    @web.middleware
    async def _check_signature(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        ok, why = self._verify(request)
        self.requests.append((request.method, request.path, ok))
        if not ok:
            return _error(401, "NotAuthenticated", why)
        return await handler(request)

    def _verify(self, request: web.Request) -> tuple[bool, str]:
        header = request.headers.get("authorization", "")
        if not header.startswith("Signature "):
            return False, "missing 'authorization: Signature ...' header"
        params = dict(_PARAM.findall(header))
        if params.get("keyId") != self.api_key.key_id or params.get("algorithm") != "rsa-sha256":
            return False, "unknown keyId or algorithm"
        lines = []
        for name in params.get("headers", "").split():
            if name == "(request-target)":
                lines.append(f"(request-target): {request.method.lower()} {request.raw_path}")
            elif name in request.headers:
                lines.append(f"{name}: {request.headers[name]}")
            else:
                return False, f"signed header {name} missing"
        signed = set(params.get("headers", "").split())
        if not {"(request-target)", "date", "host"} <= signed:
            return False, "signature does not cover (request-target), date and host"
        try:
            self.api_key.private_key.public_key().verify(
                base64.b64decode(params["signature"]), "\n".join(lines).encode(), padding.PKCS1v15(),
                hashes.SHA256())
        except Exception:
            return False, "signature does not verify"
        return True, ""

    # --- objects -----------------------------------------------------------------------------------

    async def _namespace(self, request: web.Request) -> web.Response:
        return web.json_response(NAMESPACE)

    async def _put(self, request: web.Request) -> web.Response:
        data = await request.read()
        meta = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("opc-meta-")}
        blob = StoredBlob(data, meta, secrets.token_hex(8))
        self.objects[_key(request)] = blob
        return web.Response(status=200, headers={"etag": blob.etag, "opc-content-md5": _md5(data)})

    def _blob(self, request: web.Request) -> StoredBlob:
        blob = self.objects.get(_key(request))
        if blob is None:
            raise _http_error(404, "ObjectNotFound", f"object {request.match_info['name']} not found")
        return blob

    def _headers(self, blob: StoredBlob) -> dict[str, str]:
        return {"etag": blob.etag, "content-md5": _md5(blob.data), **blob.metadata}

    async def _get(self, request: web.Request) -> web.Response:
        blob = self._blob(request)
        return web.Response(body=blob.data, headers=self._headers(blob), content_type="application/octet-stream")

    async def _head(self, request: web.Request) -> web.Response:
        blob = self._blob(request)
        return web.Response(headers={**self._headers(blob), "content-length": str(len(blob.data))})

    async def _delete(self, request: web.Request) -> web.Response:
        self._blob(request)
        del self.objects[_key(request)]
        return web.Response(status=204)

    async def _list(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        prefix = request.query.get("prefix", "")
        start = request.query.get("start", "")
        limit = min(int(request.query.get("limit", self.page_size)), self.page_size)
        names = sorted(n for (b, n) in self.objects if b == bucket and n.startswith(prefix) and n >= start)
        page, rest = names[:limit], names[limit:]
        body: dict[str, object] = {
            "objects": [{"name": n, "size": len(self.objects[(bucket, n)].data)} for n in page], "prefixes": []}
        if rest:
            body["nextStartWith"] = rest[0]
        return web.json_response(body)

    # --- multipart ---------------------------------------------------------------------------------

    async def _create_upload(self, request: web.Request) -> web.Response:
        details = await request.json()
        upload_id = secrets.token_hex(8)
        meta = {k.lower(): v for k, v in (details.get("metadata") or {}).items()}
        self.uploads[upload_id] = Upload(details["object"], meta)
        return web.json_response({"namespace": request.match_info["ns"], "bucket": request.match_info["bucket"],
                                  "object": details["object"], "uploadId": upload_id,
                                  "timeCreated": "2026-01-01T00:00:00.000Z"})

    def _upload(self, request: web.Request) -> Upload:
        upload = self.uploads.get(request.query.get("uploadId", ""))
        if upload is None or upload.name != request.match_info["name"]:
            raise _http_error(404, "NoSuchUpload", "no such multipart upload")
        return upload

    async def _upload_part(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        data = await request.read()
        etag = secrets.token_hex(8)
        upload.parts[int(request.query["uploadPartNum"])] = (data, etag)
        return web.Response(status=200, headers={"etag": etag, "opc-content-md5": _md5(data)})

    async def _commit(self, request: web.Request) -> web.Response:
        upload = self._upload(request)
        details = await request.json()
        chosen = sorted(details["partsToCommit"], key=lambda p: p["partNum"])
        for part in chosen:
            stored = upload.parts.get(part["partNum"])
            if stored is None or stored[1] != part["etag"]:
                raise _http_error(400, "InvalidPart", f"part {part['partNum']} missing or etag mismatch")
        data = b"".join(upload.parts[p["partNum"]][0] for p in chosen)
        blob = StoredBlob(data, upload.metadata, secrets.token_hex(8))
        self.objects[_key(request)] = blob
        del self.uploads[request.query["uploadId"]]
        self.committed_multipart.append(upload.name)
        return web.Response(status=200, headers={"etag": blob.etag, "opc-multipart-md5": _md5(data)})

    async def _abort(self, request: web.Request) -> web.Response:
        self._upload(request)
        del self.uploads[request.query["uploadId"]]
        return web.Response(status=204)


def _key(request: web.Request) -> tuple[str, str]:
    return request.match_info["bucket"], request.match_info["name"]


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _http_error(status: int, code: str, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}[status]
    return cls(text=f'{{"code": "{code}", "message": "{message}"}}', content_type="application/json")


async def start(api_key: ApiKey, **kwargs: object) -> tuple[FakeObjectStorage, TestServer]:
    """Start the fake on a free loopback port; the caller closes the server."""
    fake = FakeObjectStorage(api_key, **kwargs)  # type: ignore[arg-type]
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    return fake, server
