"""bench/decode_loop.py runs on the CPU and prints its table (eager rows; compiling is for real runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_eager_rows_print_with_positive_timings():
    result = subprocess.run(
        [sys.executable, "bench/decode_loop.py", "--device", "cpu", "--no-compile", "--runs", "2", "--new-tokens", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.strip("|").split("|") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    table = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}
    assert set(table) == {"generate", "loop"}
    for warm_up, best, median, ratio in table.values():
        assert 0 < float(best) <= float(median)
        assert float(ratio.rstrip("x")) > 0
    assert table["generate"][3] == "1.00x"
