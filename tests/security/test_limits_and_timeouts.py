"""Request size limits, bounded parameters, timeouts on every outbound call, and pinned dependencies."""

from __future__ import annotations

import ast
import functools
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from knowcast.store import Store
from tests.security.conftest import bearer, make_app

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "knowcast"


# ----------------------------------------------------------------------------------------- size limits
def test_body_over_limit_is_413_with_or_without_content_length(store: Store, keys: dict[str, str]) -> None:
    client = TestClient(make_app(store, max_body_bytes=10_000))
    h = {**bearer(keys["ingest"]), "Content-Type": "application/json"}
    big = b"[" + b",".join(b'{"user_id":"u%d"}' % i for i in range(2000)) + b"]"
    r = client.post("/v1/users", content=big, headers=h)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Any:  # streamed: no Content-Length, the middleware counts bytes as they come
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = client.post("/v1/users", content=chunks(), headers=h)
    assert r.status_code == 413
    small = b'[{"user_id":"u1"}]'
    assert client.post("/v1/users", content=small, headers=h).status_code == 200


def test_batch_over_row_limit_is_413(store: Store, keys: dict[str, str]) -> None:
    client = TestClient(make_app(store, max_batch_rows=10))
    rows = [{"user_id": f"u{i}"} for i in range(11)]
    r = client.post("/v1/users", json=rows, headers=bearer(keys["ingest"]))
    assert r.status_code == 413 and "split" in r.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/items?limit=100000",
        "/v1/items?limit=0",
        "/v1/items?offset=-1",
        "/v1/items?q=" + "x" * 201,
        "/v1/events?limit=5000",
        "/v1/keys/99999999999999999999999",
    ],
)
def test_unbounded_parameters_are_refused(client: TestClient, keys: dict[str, str], url: str) -> None:
    r = client.get(url, headers=bearer(keys["admin"])) if "keys" not in url else client.delete(
        url, headers=bearer(keys["admin"])
    )
    assert r.status_code == 422, (url, r.status_code, r.text[:200])


def test_key_request_fields_are_bounded(client: TestClient, keys: dict[str, str]) -> None:
    h = bearer(keys["admin"])
    assert client.post("/v1/keys", json={"name": "x" * 129, "scopes": ["read"]}, headers=h).status_code == 422
    assert client.post("/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=h).status_code == 422
    assert client.post("/v1/keys", json={"name": "x", "scopes": []}, headers=h).status_code == 422


# ----------------------------------------------------------------------------------------- timeouts
#: Calls that open network connections, and the keyword arguments that bound how long they may wait.
NETWORK_CALLS = {
    "Client": ("timeout",),  # httpx.Client / AsyncClient
    "AsyncClient": ("timeout",),
    "from_url": ("socket_timeout", "socket_connect_timeout"),  # redis
    "Redis": ("socket_timeout", "socket_connect_timeout"),
    "urlopen": ("timeout",),
}
HTTP_FUNCS = {"get", "post", "put", "patch", "delete", "request", "stream"}
#: Known gaps, reported to their owners; the test fails if a new one appears.
KNOWN_WITHOUT_TIMEOUT: set[tuple[str, str]] = set()


@functools.cache
def outbound_calls_without_timeout() -> frozenset[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = ""
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner = func.value.id
            kwargs = {k.arg for k in node.keywords}
            if None in kwargs:  # **options: cannot tell statically
                continue
            needs: tuple[str, ...] = ()
            if name in NETWORK_CALLS and (name not in ("Client", "AsyncClient") or owner == "httpx"):
                needs = NETWORK_CALLS[name]
            elif owner in ("httpx", "requests") and name in HTTP_FUNCS:
                needs = ("timeout",)
            if needs and not set(needs) <= kwargs:
                found.add((str(path.relative_to(SRC)), name))
    return frozenset(found)


def test_every_outbound_call_has_a_timeout() -> None:
    new = outbound_calls_without_timeout() - KNOWN_WITHOUT_TIMEOUT
    assert not new, f"network calls without a timeout: {sorted(new)}"
    db = (SRC / "store" / "db.py").read_text()
    assert "connect_timeout" in db, "PostgreSQL connections need connect_timeout"


def test_known_gaps_are_fixed() -> None:
    assert not (outbound_calls_without_timeout() & KNOWN_WITHOUT_TIMEOUT)


def test_rate_limiter_does_not_hang_on_a_silent_redis(store: Store, keys: dict[str, str]) -> None:
    """A Redis that accepts connections but never answers costs one short timeout, then the API goes on."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        port = srv.getsockname()[1]
        client = TestClient(make_app(store, redis_url=f"redis://127.0.0.1:{port}/0"))
        t0 = time.perf_counter()
        h = bearer(keys["read"])
        statuses = [client.get("/v1/items?limit=1", headers=h).status_code for _ in range(5)]
        elapsed = time.perf_counter() - t0
        assert statuses == [200] * 5
        assert elapsed < 3.0, f"5 requests took {elapsed:.1f} s against a silent Redis"
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        srv.close()


# ----------------------------------------------------------------------------------------- dependencies
def _requirements() -> list[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta.get("optional-dependencies", {}).values():
        reqs += extra
    return reqs


def test_every_dependency_has_a_lower_bound() -> None:
    reqs = _requirements()
    assert len(reqs) > 10
    missing = [r for r in reqs if ">=" not in r and "==" not in r and "~=" not in r]
    assert not missing, f"dependencies without a lower bound: {missing}"


def test_pip_audit_finds_no_known_vulnerabilities() -> None:
    """Runs in the default suite, so CI audits every install; skips with the reason when the vulnerability
    database is unreachable (offline, or a private mirror that serves no vulnerability data)."""
    exe = shutil.which("pip-audit") or shutil.which("pip-audit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("pip-audit is not installed (pip install pip-audit)")
    res = subprocess.run(
        [exe, "--skip-editable", "--progress-spinner", "off"], capture_output=True, text=True, timeout=600
    )
    unaudited = res.stdout.count("could not be audited")
    if "ConnectionError" in res.stderr or "Max retries" in res.stderr or unaudited > 20:
        pytest.skip("pip-audit could not reach the vulnerability database (offline or a private mirror)")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
