"""The tenants file (every bad input named by file and key) and token verification: digests
compared against every tenant, JWTs verified against a JWKS served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from llama_agent.services.tenants.auth import (
    JwtSettings,
    JwtVerifier,
    TokenVerifier,
    Unauthorized,
    bearer_token,
    tenant_by_token,
    token_digest,
)
from llama_agent.services.tenants.config import (
    MAX_TENANTS_FILE_BYTES,
    TenantLimits,
    TenantsFileError,
    load_tenants,
)


def write(directory: Path, text: str) -> Path:
    path = directory / "tenants.toml"
    path.write_text(text)
    return path


def table(root: Path, name: str = "acme", token: str = "secret", extra: str = "") -> str:
    digest = token_digest(token)
    return f'[[tenant]]\nname = "{name}"\ntoken_sha256 = "{digest}"\nworkspace_root = "{root}"\n{extra}'


def test_a_good_file_gives_its_tenants_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    extra = 'tools_dirs = ["tools"]\n[tenant.limits]\nmax_sessions = 3\n'
    tenants = load_tenants(write(tmp_path, table(tmp_path, extra=extra) + table(tmp_path, "b2", "other")))
    acme = tenants.by_name("acme")
    assert acme is not None and acme.workspace_root == tmp_path.resolve()
    assert acme.tools_dirs == ((tmp_path / "tools").resolve(),)
    assert acme.limits == TenantLimits(max_sessions=3)
    assert acme.grants_path(Path("/cfg")) == Path("/cfg/tenants/acme/grants.toml")
    assert len(tenants) == 2


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no [[tenant]] table"),
        ("tenant = 3", "no [[tenant]] table"),
        ("other = 1\n[[tenant]]\nname='a'", "unknown key 'other'"),
        ("[[tenant]]\nworkspace_root = 'ROOT'", "tenant[0].name: missing"),
        ("[[tenant]]\nname = 'Bad Name'\nworkspace_root = 'ROOT'", "tenant[0].name: 'Bad Name' is not"),
        ("[[tenant]]\nname = '../up'\nworkspace_root = 'ROOT'", "tenant[0].name"),
        ("[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\ncolour = 'red'", "tenant[0].colour: unknown key"),
        ("[[tenant]]\nname = 'a'", "tenant[0].workspace_root: missing"),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT/nope'",
            "tenant[0].workspace_root: 'ROOT/nope' is not",
        ),
        ("[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\ntoken_sha256 = 'abc'", "tenant[0].token_sha256"),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\ntools_dirs = 'x'",
            "tenant[0].tools_dirs: must be",
        ),
        ("[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\ntools_dirs = ['nope']", "tenant[0].tools_dirs[0]"),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\ngrants_file = 'ROOT/g.toml'",
            "tenant[0].grants_file",
        ),
        ("[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\nlimits = 3", "tenant[0].limits: must be a table"),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\n[tenant.limits]\nspeed = 1",
            "tenant[0].limits.speed",
        ),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\n[tenant.limits]\nmax_sessions = 0",
            "max_sessions",
        ),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\n[tenant.limits]\nmax_sessions = true",
            "max_sessions",
        ),
        (
            "[[tenant]]\nname = 'a'\nworkspace_root = 'ROOT'\n" * 2,
            "tenant[1].name",
        ),
        ("[[tenant", "cannot be read"),
    ],
)
def test_every_bad_input_is_named_with_the_file_and_key(tmp_path: Path, text: str, said: str) -> None:
    path = write(tmp_path, text.replace("ROOT", str(tmp_path)))
    with pytest.raises(TenantsFileError) as refused:
        load_tenants(path)
    assert str(path) in str(refused.value) and said.replace("ROOT", str(tmp_path)) in str(refused.value)


def test_two_tenants_with_one_token_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match=r"tenant\[1\].token_sha256: the same as tenant\[0\]'s"):
        load_tenants(write(tmp_path, table(tmp_path, "a") + table(tmp_path, "b")))


def test_a_file_too_big_or_not_regular_is_not_read(tmp_path: Path) -> None:
    big = write(tmp_path, "#" * (MAX_TENANTS_FILE_BYTES + 1))
    with pytest.raises(TenantsFileError, match="limit"):
        load_tenants(big)
    with pytest.raises(TenantsFileError, match="not a regular file"):
        load_tenants(tmp_path)


def test_without_jwt_every_tenant_needs_a_token(tmp_path: Path) -> None:
    tenants = load_tenants(write(tmp_path, f"[[tenant]]\nname = 'a'\nworkspace_root = '{tmp_path}'\n"))
    with pytest.raises(TenantsFileError, match=r"tenant\[0\].token_sha256: missing"):
        TokenVerifier(tenants)


def test_a_token_finds_its_tenant_only(tmp_path: Path) -> None:
    tenants = load_tenants(write(tmp_path, table(tmp_path, "a", "one") + table(tmp_path, "b", "two")))
    assert getattr(tenant_by_token(tenants, "two"), "name", None) == "b"
    assert tenant_by_token(tenants, "three") is None
    assert tenant_by_token(tenants, token_digest("one")) is None  # the digest is no token


@pytest.mark.parametrize(
    "header", [None, "", "Basic abc", "Bearer", "Bearer   ", "Bearer " + "x" * 20000], ids=str
)
def test_what_is_not_a_bearer_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer_token(header)


async def test_the_verifier_never_says_which_token(tmp_path: Path) -> None:
    verifier = TokenVerifier(load_tenants(write(tmp_path, table(tmp_path, "a", "one"))))
    assert (await verifier.tenant_for("Bearer one")).name == "a"
    with pytest.raises(Unauthorized) as refused:
        await verifier.tenant_for("Bearer the-secret-guess")
    assert "the-secret-guess" not in str(refused.value)


# -- JWT ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing() -> Iterator[tuple[rsa.RSAPrivateKey, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k", "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            FETCHES.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


FETCHES: list[str] = []  # the JWKS requests the fixture's server has answered


def sign(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    payload = {"iss": "https://idp", "aud": "svc", "exp": int(time.time()) + 60, "tenant": "a", **claims}
    return jwt.encode(payload, key, "RS256", headers={"kid": "k"})


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({}, True),
        ({"exp": int(time.time()) - 600}, False),
        ({"aud": "other"}, False),
        ({"iss": "https://other"}, False),
        ({"tenant": "nobody"}, False),
        ({"tenant": 7}, False),
    ],
    ids=["valid", "expired", "audience", "issuer", "unknown tenant", "claim not a name"],
)
async def test_jwts_are_verified(
    tmp_path: Path, signing: tuple[rsa.RSAPrivateKey, str], claims: dict[str, Any], ok: bool
) -> None:
    key, url = signing
    tenants = load_tenants(write(tmp_path, f"[[tenant]]\nname = 'a'\nworkspace_root = '{tmp_path}'\n"))
    verifier = TokenVerifier(tenants, JwtVerifier(JwtSettings("https://idp", "svc", url)))
    token = sign(key, **claims)
    if ok:
        assert (await verifier.tenant_for(f"Bearer {token}")).name == "a"
    else:
        with pytest.raises(Unauthorized):
            await verifier.tenant_for(f"Bearer {token}")


async def test_a_jwt_signed_by_another_key_is_refused(
    tmp_path: Path, signing: tuple[rsa.RSAPrivateKey, str]
) -> None:
    _, url = signing
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tenants = load_tenants(write(tmp_path, f"[[tenant]]\nname = 'a'\nworkspace_root = '{tmp_path}'\n"))
    verifier = TokenVerifier(tenants, JwtVerifier(JwtSettings("https://idp", "svc", url)))
    with pytest.raises(Unauthorized, match="InvalidSignatureError"):
        await verifier.tenant_for(f"Bearer {sign(other)}")


async def test_made_up_key_ids_do_not_make_the_service_fetch_the_jwks_each_time(
    tmp_path: Path, signing: tuple[rsa.RSAPrivateKey, str]
) -> None:
    key, url = signing
    tenants = load_tenants(write(tmp_path, f"[[tenant]]\nname = 'a'\nworkspace_root = '{tmp_path}'\n"))
    verifier = TokenVerifier(tenants, JwtVerifier(JwtSettings("https://idp", "svc", url)))
    assert (await verifier.tenant_for(f"Bearer {sign(key)}")).name == "a"
    fetched = len(FETCHES)
    for n in range(20):
        forged = jwt.encode({"tenant": "a"}, key, "RS256", headers={"kid": f"made-up-{n}"})
        with pytest.raises(Unauthorized):
            await verifier.tenant_for(f"Bearer {forged}")
    assert len(FETCHES) - fetched <= 1  # one refresh for an unknown kid, then none for 30 s
    assert (await verifier.tenant_for(f"Bearer {sign(key)}")).name == "a"  # the known key still works
