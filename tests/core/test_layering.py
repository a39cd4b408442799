"""Architecture: the core (pure logic) never imports the web, the database layer or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "knowcast"
CORE = ("text", "content", "profiles", "recommend", "live", "experiments", "analytics", "sim")
FORBIDDEN = (
    "fastapi",
    "sqlalchemy",
    "starlette",
    "typer",
    "uvicorn",
    "knowcast.api",
    "knowcast.cli",
    "knowcast.store",
    "knowcast.web",
    "knowcast.services",
)
#: The files that are a core area's service or query layer, allowed to touch the store.
ALLOWED = {"service.py", "queries.py", "bus.py", "server.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_core_folders_are_pure() -> None:
    offenders = []
    for area in CORE:
        for path in (SRC / area).rglob("*.py"):
            if path.name in ALLOWED:
                continue
            for mod in imports(path):
                if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not offenders, "\n".join(offenders)


def test_store_does_not_import_faces() -> None:
    for path in (SRC / "store").rglob("*.py"):
        for mod in imports(path):
            assert not mod.startswith(("fastapi", "knowcast.api", "knowcast.cli", "knowcast.web")), path
