"""Rebuild BENCHMARKS.md from the per-topic result files in benchmarks/results/.

Each benchmark script prints its table; the figures quoted in the project are copied, with the
command that produced them, into ``benchmarks/results/<topic>.md``. This script stitches those
files into the top-level BENCHMARKS.md (``python benchmarks/collect.py``).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["readers", "cbf", "simulate", "spots", "baselines", "preprocess", "train", "screen", "screen_gpu", "hardcases",
         "drops_db", "drops_pipeline", "web"]

HEADER = """# Benchmarks

Speed and memory figures for xtalscreen, each with the command that produced it. Machines here
are shared and noisy: every figure is quoted next to a baseline measured in the same process,
and the ratio is what to compare. Unless a section says otherwise the machine is the project's
2-core, 24 GB x86-64 development box with no GPU.

Re-run everything with `make bench` (or one script: `.venv/bin/python benchmarks/bench_<topic>.py`);
rebuild this file from `benchmarks/results/*.md` with `.venv/bin/python benchmarks/collect.py`.
"""


def main() -> None:
    files = {p.stem: p for p in (HERE / "results").glob("*.md")}
    names = [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER))
    parts = [HEADER]
    for name in names:
        text = files[name].read_text().strip()
        if text.startswith("# "):
            # a result file with a top-level title: demote every heading one level
            text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
        elif not text.startswith("#"):
            text = f"## {name}\n\n{text}"
        parts.append(text)
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")
    print(f"wrote BENCHMARKS.md from {len(names)} result file(s)")


if __name__ == "__main__":
    main()
