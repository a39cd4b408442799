"""Fuzz the HTTP API from its own OpenAPI document with schemathesis (property-based, hypothesis inside).

Checks on every generated request (sent with an admin key, so authorisation never hides a bug):
- no 5xx (``not_a_server_error``);
- the response matches the schema the route declares (``response_schema_conformance``) and its declared
  content type (``content_type_conformance``).

The default run is bounded: GET routes, the ingest POSTs and the key routes, a few examples each. The
``slow`` run covers every operation with many more examples.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (pip install schemathesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.security.conftest import copy_store, make_app  # noqa: E402

FAST_EXAMPLES = 15
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
INGEST_POSTS = r"^/v1/(events|users|items|comments|creators)$"


@pytest.fixture(scope="module")
def fuzz_env(demo_db: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = copy_store(demo_db, Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db")
    app = make_app(store)
    yield app, demo_db["keys"]["admin"]
    store.dispose()


@pytest.fixture(scope="module")
def admin_key(fuzz_env: Any) -> str:
    return fuzz_env[1]


@pytest.fixture(scope="module")
def api_schema(fuzz_env: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_env[0])


def _operations(include: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """(METHOD, path) pairs from the app's OpenAPI document (built without a database)."""
    from knowcast.api.app import create_app
    from knowcast.config import Settings

    app = create_app(Settings(database_url="sqlite://", auth_enabled=True), store=_NoStore())  # type: ignore[arg-type]
    doc = app.openapi()
    methods = ("get", "post", "put", "patch", "delete")
    ops = [(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in methods]
    return sorted(op for op in ops if include(*op))


class _NoStore:
    """Stands in for the store while only the OpenAPI document is needed."""


def fuzz(schema: Any, method: str, path: str, admin_key: str, max_examples: int) -> None:
    """Generate valid and invalid requests for one operation; fail on the first check that does not hold."""
    op = schema[path][method]
    auth = {"Authorization": f"Bearer {admin_key}"}
    strategy = st.one_of(
        op.as_strategy(GenerationMode.POSITIVE, headers=auth),
        op.as_strategy(GenerationMode.NEGATIVE, headers=auth),
    )

    @given(case=strategy)
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    run()


def _default(method: str, path: str) -> bool:
    if method == "GET" or path.startswith("/v1/keys"):
        return True
    return method == "POST" and re.match(INGEST_POSTS, path) is not None


@pytest.mark.parametrize(("method", "path"), _operations(_default))
def test_fuzz(api_schema: Any, admin_key: str, method: str, path: str) -> None:
    fuzz(api_schema, method, path, admin_key, max_examples=FAST_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), _operations(lambda m, p: True))
def test_fuzz_long(api_schema: Any, admin_key: str, method: str, path: str) -> None:
    examples = int(os.environ.get("KNOWCAST_FUZZ_EXAMPLES", "200"))
    fuzz(api_schema, method, path, admin_key, max_examples=examples)
