"""``knowcast recommend evaluate`` on a public dataset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from knowcast.cli_recommend import app


def test_evaluate_json_and_errors():
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "-a", "most_popular", "--dataset", "ml-100k", "--json"])
    if r.exit_code == 1 and "does not exist" in r.output + str(r.stderr if r.stderr_bytes else ""):
        pytest.skip("shared/data/movielens/ml-100k not available")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout[r.stdout.index("[") :])
    assert rows[0]["algorithm"] == "most_popular" and 0.08 < rows[0]["ndcg@10"] < 0.16
    bad = runner.invoke(app, ["evaluate", "-a", "nope"])
    assert bad.exit_code == 2 and "unknown algorithm" in bad.output
    listed = runner.invoke(app, ["algorithms"])
    assert "ease" in listed.output and "EASE" in listed.output
