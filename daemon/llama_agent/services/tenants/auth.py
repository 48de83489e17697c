"""Who a bearer token belongs to: a tenant of the tenants file, by the sha256 of its token, or by a
JWT access token from the company's identity provider.

Tokens are secrets: they are never logged, never kept beyond the check, and compared in constant
time against every tenant's digest (no early exit that would say, by its timing, which tenant's
digest came closest). A JWT is verified with PyJWT against the provider's JWKS (its signature, its
issuer, its audience and its expiry); the tenant is named by one of its claims. Fetching the JWKS
is blocking network I/O: `TokenVerifier.tenant_for` runs it in a thread, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from llama_agent.services.tenants.config import Tenant, Tenants, TenantsFileError

log = logging.getLogger(__name__)

# The longest Authorization header value read: a JWT with many claims is a few kilobytes.
MAX_TOKEN_CHARS = 16 * 1024
JWKS_TIMEOUT_SECONDS = 5.0
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "PS512", "EdDSA")
# A token with a key id the cached JWKS lacks fetches it again at most this often (a rotated key is
# found within this long; a made-up `kid` costs nothing more).
MIN_REFETCH_SECONDS = 30.0
NO_DIGEST = "0" * 64  # compared against for a tenant without a token, so each check costs the same


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: str
    jwks_url: str
    tenant_claim: str = "tenant"
    leeway_seconds: float = 30.0


class Unauthorized(Exception):
    """No tenant for this request; the message is for the log (it never quotes the token)."""


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header value; Unauthorized otherwise."""
    if authorization is None:
        raise Unauthorized("no Authorization header")
    if len(authorization) > MAX_TOKEN_CHARS:
        raise Unauthorized("an Authorization header too long to be a token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header is not a Bearer token")
    return token.strip()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tenant_by_token(tenants: Tenants, token: str) -> Tenant | None:
    """The tenant whose `token_sha256` is the token's, compared with every tenant's in constant time."""
    digest = token_digest(token).encode("ascii")
    found: Tenant | None = None
    for tenant in tenants:
        expected = (tenant.token_sha256 or NO_DIGEST).encode("ascii")
        # No `break`: every digest is compared, whichever matches.
        if hmac.compare_digest(digest, expected) and tenant.token_sha256 is not None:
            found = tenant
    return found


def require_tokens(tenants: Tenants) -> None:
    """Without JWT, a tenant is known only by its token: each needs a `token_sha256`."""
    for index, tenant in enumerate(tenants):
        if tenant.token_sha256 is None:
            raise TenantsFileError(
                f"tenants file {tenants.path}: tenant[{index}].token_sha256: missing "
                "(required unless --jwt-issuer, --jwt-audience and --jwks-url are given)"
            )


class ThrottledJwks(jwt.PyJWKClient):
    """PyJWKClient, except that a key id it does not know makes it fetch the JWKS again at most
    once every `min_refetch_seconds`: anyone can send a token with a made-up `kid`, and each must
    not cost the service (and the identity provider) a fetch."""

    def __init__(
        self, uri: str, timeout_seconds: int, min_refetch_seconds: float = MIN_REFETCH_SECONDS
    ) -> None:
        super().__init__(uri, cache_keys=True, timeout=timeout_seconds)
        self._min_refetch_seconds = min_refetch_seconds
        self._fetched_at = -math.inf
        self._lock = threading.Lock()

    def fetch_data(self) -> Any:
        with self._lock:
            self._fetched_at = time.monotonic()
        return super().fetch_data()

    def get_signing_keys(self, refresh: bool = False) -> list[jwt.PyJWK]:
        with self._lock:
            recent = time.monotonic() - self._fetched_at < self._min_refetch_seconds
        return super().get_signing_keys(refresh and not recent)


class JwtVerifier:
    """Verifies access tokens against the identity provider's keys (cached by PyJWKClient)."""

    def __init__(self, settings: JwtSettings, timeout_seconds: float = JWKS_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self._keys = ThrottledJwks(settings.jwks_url, int(max(1, timeout_seconds)))

    def claims(self, token: str) -> dict[str, object]:
        """The verified claims of `token` (blocking: it may fetch the JWKS). Unauthorized if the
        signature, issuer, audience or expiry do not hold."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, object] = jwt.decode(
                token,
                key.key,
                algorithms=list(JWT_ALGORITHMS),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as error:
            raise Unauthorized(f"no key to verify the token: {error}") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"invalid token: {type(error).__name__}: {error}") from None
        return claims

    def tenant_name(self, token: str) -> str:
        name = self.claims(token).get(self.settings.tenant_claim)
        if not isinstance(name, str):
            raise Unauthorized(f"the token has no {self.settings.tenant_claim!r} claim naming a tenant")
        return name


class TokenVerifier:
    """The tenant a bearer token stands for: by the tenants file's digests first, then as a JWT
    (when JWT is configured)."""

    def __init__(self, tenants: Tenants, jwt_verifier: JwtVerifier | None = None) -> None:
        self.jwt = jwt_verifier
        self.check(tenants)
        # Replaced whole (one assignment, on the event loop) when the tenants file is reloaded.
        self.tenants = tenants

    def check(self, tenants: Tenants) -> None:
        """TenantsFileError if `tenants` cannot be served by this verifier (a tenant without a
        token, when no JWT is configured)."""
        if self.jwt is None:
            require_tokens(tenants)

    async def tenant_for(self, authorization: str | None) -> Tenant:
        """The tenant of an Authorization header value; Unauthorized if it names none."""
        token = bearer_token(authorization)
        tenant = tenant_by_token(self.tenants, token)
        if tenant is not None:
            return tenant
        if self.jwt is None or token.count(".") != 2:
            raise Unauthorized("a token no tenant has")
        try:
            name = await asyncio.wait_for(
                asyncio.to_thread(self.jwt.tenant_name, token), JWKS_TIMEOUT_SECONDS * 2
            )
        except TimeoutError:
            raise Unauthorized("the identity provider's keys could not be fetched in time") from None
        tenant = self.tenants.by_name(name)
        if tenant is None:
            raise Unauthorized(f"the token names no tenant of this deployment ({name[:64]!r})")
        return tenant
