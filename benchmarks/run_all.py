"""Run every benchmark in this folder in turn (``make bench``) and print their tables.

Each ``bench_*.py`` is also runnable on its own; see BENCHMARKS.md for the figures and the
command that produced each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rc = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n### {script.name}\n", flush=True)
        r = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        if r.returncode:
            print(f"{script.name} failed with exit code {r.returncode}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
