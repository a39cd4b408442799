"""Fault-injection fixtures: throwaway PostgreSQL and Redis servers we may stop and kill, real API processes.

The shared servers on 5432 / 6379 are used by everyone on the machine, so a test that takes a server down
starts its own: ``initdb`` + ``pg_ctl`` into a fresh folder on a free port (run as the ``postgres`` OS user
when we are root, since PostgreSQL refuses to run as root), or ``redis-server`` on a free port without
persistence. Each skips with the reason when the binaries are missing.

The throwaway PostgreSQL runs with ``fsync=off`` (speed on a shared 2-core machine). That loses nothing on
a *process* crash (committed WAL is in the OS page cache); only a machine crash would, which no test does.
``synchronous_commit`` stays on: a commit the server acknowledged is in the WAL before the client hears it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from knowcast.store import Store
from tests.live_server.conftest import free_port, wait_up

PG_BIN = Path(os.environ.get("KNOWCAST_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _pg_tool(name: str) -> str | None:
    path = PG_BIN / name
    if path.exists():
        return str(path)
    return shutil.which(name)


class PgServer:
    """A private PostgreSQL cluster: ``start()``, ``stop(mode)``, ``url(db)``; removed by ``destroy()``."""

    def __init__(self, root: Path, port: int, as_postgres: bool) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "server.log"
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({res.returncode}): {res.stderr or res.stdout}")
        return res

    def init(self) -> None:
        initdb = _pg_tool("initdb")
        assert initdb is not None
        self._run(
            initdb,
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=60 -c shared_buffers=64MB"
        )
        self._run(
            str(_pg_tool("pg_ctl")),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended and their transactions rolled back; ``immediate``: a crash."""
        self._run(str(_pg_tool("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_reason() -> str | None:
    if _pg_tool("initdb") is None or _pg_tool("pg_ctl") is None:
        return f"initdb / pg_ctl not found (looked in {PG_BIN} and on PATH)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (PostgreSQL refuses to run as root)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run PostgreSQL as"
    return None


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PgServer]:
    """A PostgreSQL cluster of our own on a free loopback port, which tests may stop and restart."""
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    as_postgres = os.geteuid() == 0
    # Not under pytest's tmp_path: that is private to root (mode 700) and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="kc-pg-", dir="/tmp"))
    if as_postgres:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(root, free_port(), as_postgres)
    try:
        server.init()
        server.start()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        server.destroy()
        pytest.skip(f"could not start a private PostgreSQL: {exc}")
    yield server
    server.destroy()


@pytest.fixture
def pg_server(private_pg: PgServer) -> PgServer:
    """The private cluster, started again if an earlier test left it stopped."""
    if not private_pg.running():
        private_pg.start()
    return private_pg


# ---------------------------------------------------------------------------------------------- redis
class RedisServer:
    """A ``redis-server`` on a free port, without persistence; ``kill()`` is a SIGKILL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        log = (self.root / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        import redis

        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.1)
        raise RuntimeError("redis-server did not answer within 20 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("redis (the Python client) is not installed")
    server = RedisServer(tmp_path)
    try:
        server.start()
    except RuntimeError as exc:
        server.kill()
        pytest.skip(f"could not start redis-server: {exc}")
    yield server
    server.kill()


# ---------------------------------------------------------------------------------------------- API server
class ApiServer:
    """``uvicorn knowcast.api.app:create_app --factory`` in its own process on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "knowcast.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_up(self, timeout: float = 90) -> None:
        wait_up(self.port, self.proc, self.log, timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ApiServer]]:
    """A factory: ``api_server(env)`` starts a server (stopped at teardown) and waits until it answers."""
    started: list[ApiServer] = []

    def start(env: dict[str, str]) -> ApiServer:
        srv = ApiServer({"KNOWCAST_AUTH": "off", **env}, tmp_path / f"api-{len(started)}.log")
        started.append(srv)
        srv.wait_up()
        return srv

    yield start
    for srv in started:
        srv.stop()


# ---------------------------------------------------------------------------------------------- models
@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, TestClient, Path]]:
    """A seeded tiny demo on SQLite with model v1 (EASE) trained, active and served by the API (in process,
    re-reading the registry every 0.2 s); artifacts under ``tmp_path/artifacts`` (``KNOWCAST_ARTIFACTS``)."""
    from knowcast.api.app import create_app
    from knowcast.config import Settings
    from knowcast.recommend import service as svc
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("KNOWCAST_ARTIFACTS", str(artifacts))
    monkeypatch.setattr(svc, "CHECK_SECONDS", 0.2)
    svc.invalidate()
    store = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))
    svc.train(store.engine, "ease", validate=False, artifacts_dir=artifacts)
    app = create_app(Settings(database_url=store.url, auth_enabled=False, artifacts_dir=artifacts), store)
    with TestClient(app) as client:
        yield store, client, artifacts
    svc.invalidate()
    store.dispose()


def top_user(store: Store) -> str:
    """The user with the most views (a rich history: a full page of recommendations)."""
    with store.engine.connect() as c:
        return str(
            c.execute(
                text("SELECT user_id FROM events WHERE type = 'view' GROUP BY user_id ORDER BY COUNT(*) DESC")
            ).scalar()
        )


def recommend_page(client: TestClient, user: str) -> dict[str, Any]:
    r = client.get(f"/v1/users/{user}/recommendations", params={"n": 10})
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    assert len(page["items"]) == 10
    return page
