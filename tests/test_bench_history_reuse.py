"""bench/history_reuse.py runs end to end on the CPU (tiny shape) and prints its whole table.

Only the table's shape and the prompts' growth are checked here; speed is the
benchmark's business, not a test's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_tiny_cpu_run_prints_every_question_and_way(tmp_path):
    out = tmp_path / "table.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see test_bench_generation.py
    result = subprocess.run(
        [sys.executable, "bench/history_reuse.py", "--shape", "tiny", "--runs", "1", "--turns", "3", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text in result.stdout
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = _cells(lines[0])
    assert header == ["question", "prompt tokens", "no caches", "photos once", "all caches"]
    rows = [dict(zip(header, _cells(line))) for line in lines[1:]]
    assert [row["question"] for row in rows] == ["1", "2", "3", "**3 / 1**"]
    tokens = [int(row["prompt tokens"]) for row in rows[:3]]
    # Each question adds its 448x448 photo (196 tokens), its words and the one-token answer before it.
    assert tokens[1] - tokens[0] == tokens[2] - tokens[1] > 196
    for row in rows:
        for way in header[2:]:
            best, median = (float(v) for v in row[way].split(" / "))
            assert 0 < best <= median
