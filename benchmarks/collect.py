"""Assemble docs/benchmarks.md from the per-benchmark reports in docs/benchmarks/*.md.

    python benchmarks/collect.py

Each benchmark script writes its own latest result (command, machine, table, peer ratio) to
docs/benchmarks/<name>.md; this puts them on one page in a fixed order.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
ORDER = ["ingest", "content_tagging", "embeddings", "content_profiles", "profiles", "recommend_quality",
         "recommend_serving", "spark_parity", "sentiment", "live", "live_e2e", "bandits", "experiments_real",
         "analytics", "attribution", "dashboard", "scale", "load"]


def relink(line: str) -> str:
    """Relative links and images of docs/benchmarks/<name>.md, made to work from docs/benchmarks.md."""
    return re.sub(r"(\]\()(?!https?:|#|/)([^)]+\))", r"\1benchmarks/\2", line)


def main() -> None:
    parts = sorted((DOCS / "benchmarks").glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER
                                                                      else len(ORDER), p.stem))
    out = [
        "# Benchmarks",
        "",
        "The latest result of every script in `benchmarks/`, each with the command that produced it and the",
        "machine it ran on. Speed figures are compared with a peer measured in the same run (a ratio),",
        "because the machines are shared and noisy. Regenerate this page with",
        "`python benchmarks/collect.py` after running a benchmark.",
        "",
        "Contents: " + ", ".join(f"[{p.stem}](#{p.stem.replace('_', '-')})" for p in parts),
        "",
    ]
    for p in parts:
        text = p.read_text().strip().splitlines()
        title = text[0].lstrip("# ").strip() if text and text[0].startswith("#") else p.stem
        out += [f'<a id="{p.stem.replace("_", "-")}"></a>', "", f"## {title}", ""]
        out += [("#" + line) if line.startswith("#") else relink(line) for line in text[1:]]
        out.append("")
    (DOCS / "benchmarks.md").write_text("\n".join(out) + "\n")
    print(f"wrote {DOCS / 'benchmarks.md'} from {len(parts)} reports")


if __name__ == "__main__":
    main()
