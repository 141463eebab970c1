"""Data-plane credentials: short-lived RS256 JWTs in the format of Temporal's default JWT claim mapper.

The claim mapper (``common/authorization/default_jwt_claim_mapper.go`` in temporalio/temporal) reads ``sub`` and
``permissions: ["<namespace>:<read|write|worker|admin>"]`` and finds the key by the ``kid`` header in the JWKS
configured as ``global.authorization.jwtKeyProvider.keySourceURIs`` — point that at ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tcloud.settings import Settings

ALGORITHM = "RS256"
ISSUER = "tcloud"


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK (for the JWKS)."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def key_path(settings: Settings) -> Path:
    """Where the signing key lives: the configured file, else one generated once in the state directory."""
    return settings.jwt_private_key_file or settings.state_dir / "jwt" / "signing-key.pem"


def _generate(path: Path) -> None:
    """Write a new RSA key to ``path`` (mode 0600) unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    try:
        os.link(tmp, path)  # atomic and refuses to replace: the first writer wins
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@lru_cache(maxsize=8)
def _load(path: Path) -> SigningKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    thumbprint = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)["n"][-16:]
    return SigningKey(key, kid=f"tcloud-{thumbprint}")


def signing_key(settings: Settings) -> SigningKey:
    """The platform's signing key, generated on first use when no key file is configured."""
    path = key_path(settings)
    if not path.exists():
        if settings.jwt_private_key_file is not None:
            raise FileNotFoundError(f"TCLOUD_JWT_PRIVATE_KEY_FILE {path} does not exist")
        _generate(path)
    return _load(path.resolve())


def jwks(settings: Settings) -> dict[str, Any]:
    return {"keys": [signing_key(settings).jwk()]}


# What a data-plane token may grant on one namespace (which of them an API key gets: its owner's role and namespace
# access, tcloud.domain.access.data_plane_role), in the claim mapper's words: `read` (describe, list, query,
# history) or `write` (also start, signal, terminate, poll as a worker). `admin` (namespace update, search
# attributes) stays with the control plane, which changes namespaces through its own workflows.
Role = Literal["read", "write"]
ROLES: tuple[Role, ...] = ("read", "write")


def issue(settings: Settings, *, account_id: str, namespace: str, role: Role = "write", now: float | None = None,
          ttl_seconds: int | None = None) -> tuple[str, int]:
    """A token that lets its bearer use ``namespace`` (and nothing else) for ``settings.jwt_ttl_seconds``.

    Returns:
        The token and its expiry (seconds since the epoch).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    key = signing_key(settings)
    issued = int(now if now is not None else time.time())
    expires = issued + (settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds)
    claims = {"sub": account_id, "iss": ISSUER, "iat": issued, "nbf": issued, "exp": expires,
              "permissions": [f"{namespace}:{role}"]}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid}), expires


def verify(settings: Settings, token: str) -> dict[str, Any]:
    """Decode and check a token as Temporal would (signature by ``kid``, expiry); for tests and tools."""
    jwk_set = jwt.PyJWKSet.from_dict(jwks(settings))
    kid = jwt.get_unverified_header(token).get("kid")
    key = next((k for k in jwk_set.keys if k.key_id == kid), None)
    if key is None:
        raise jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=[ALGORITHM], issuer=ISSUER)
    return claims
