"""``knowcast experiments``: create from YAML, start, ramp, assign, report (table, JSON, CSV), exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from knowcast.cli_experiments import app
from knowcast.experiments import service as svc
from knowcast.ingest.service import import_records

SPEC = """
key: live_layout
name: Live-room layout with pinned course card
variants:
  - {key: control, weight: 1}
  - {key: pinned_card, weight: 1}
decision_metric: conversion
guardrails: [refund_rate]
coverage: 0.5
"""


def test_cli_round_trip(sqlite_store, tmp_path) -> None:
    db = ["--db", sqlite_store.url]
    run = CliRunner().invoke
    f = tmp_path / "exp.yaml"
    f.write_text(SPEC)
    r = run(app, ["create", str(f), "--actor", "ana", *db])
    assert r.exit_code == 0, r.output
    assert "live_layout" in r.output
    assert run(app, ["create", str(f), *db]).exit_code == 3  # conflict: key taken
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("live_layout", "other").replace("weight: 1}", "weight: heavy}", 1))
    r = run(app, ["create", str(bad), *db])
    assert r.exit_code == 2 and "variants[0].weight" in r.output
    assert run(app, ["start", "live_layout", "--actor", "ben", *db]).exit_code == 0
    assert run(app, ["ramp", "live_layout", "--coverage", "0.2", *db]).exit_code == 3  # only up while running
    r = run(app, ["ramp", "live_layout", "--coverage", "1.0", *db])
    assert r.exit_code == 0 and "100%" in r.output
    assert run(app, ["start", "nope", *db]).exit_code == 1
    r = run(app, ["assign", "live_layout", "u42", "--attr", "channel=feed", "--json", *db])
    a = json.loads(r.output)
    assert a["variant"] in ("control", "pinned_card") and a["reason"] == "assigned"
    # exposures and purchases, then the report
    e = sqlite_store.engine
    rows = []
    t0 = 1_700_000_000_000
    for i in range(300):
        u = f"u{i}"
        v = svc.assign(e, "live_layout", u).variant
        rows.append({"event_id": f"x{i}", "type": "exposure", "ts": t0 + i * 60_000, "user_id": u,
                     "experiment": "live_layout", "variant": v})
        if i % (4 if v == "pinned_card" else 6) == 0:
            rows.append({"event_id": f"p{i}", "type": "purchase", "ts": t0 + i * 60_000 + 5_000, "user_id": u,
                         "item_id": "course-1", "amount": 99.0})
    import_records(e, "events", rows, create_missing=True)
    r = run(app, ["report", "live_layout", "--json", *db])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["exposed_users"] == 300 and rep["decision_metric"] == "conversion"
    assert rep["recommendation"]["action"] in ("ship", "keep_running", "stop")
    r = run(app, ["report", "live_layout", *db])
    assert r.exit_code == 0 and "SRM check" in r.output and "recommendation:" in r.output
    r = run(app, ["report", "live_layout", "--csv", *db])
    assert r.output.splitlines()[0].startswith("experiment,metric,role,variant")
    r = run(app, ["show", "live_layout", "--json", *db])
    shown = json.loads(r.output)
    assert [x["action"] for x in shown["audit"]] == ["create", "start", "ramp"]
    assert [x["actor"] for x in shown["audit"]][:2] == ["ana", "ben"]
    assert run(app, ["stop", "live_layout", *db]).exit_code == 0
    r = run(app, ["list", "--json", *db])
    assert [(x["key"], x["state"]) for x in json.loads(r.output)] == [("live_layout", "stopped")]
