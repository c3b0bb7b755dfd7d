"""bench/stt_short.py runs end to end on a tiny grid and prints one well-formed table.

Only the table's shape is checked here (every asked setting a row, sane cells); speed
and accuracy are the benchmark's business, not a test's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng speaks the questions")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _min_median(cell: str) -> tuple[float, float]:
    best, median = (float(v) for v in cell.split(" / "))
    return best, median


def test_tiny_grid_prints_a_row_per_setting():
    command = [sys.executable, "bench/stt_short.py", "--runs", "1", "--utterances", "1", "--compute", "int8",
               "--threads", "2", "--beams", "1", "5", "--vad", "on", "--voices", "en-us:160"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header, rows = _cells(lines[0]), [dict(zip(_cells(lines[0]), _cells(line))) for line in lines[2:]]
    assert header[:6] == ["backend", "weights", "compute", "threads", "beam", "VAD"]
    assert "2 utterances" in result.stdout  # one question, one jfk slice

    assert [(r["backend"], r["compute"], r["beam"], r["VAD"]) for r in rows] == [
        ("faster-whisper", "int8", "1", "on"),
        ("faster-whisper", "int8", "5", "on"),
        ("openai-whisper", "float32", "1 (fixed work)", "-"),
        ("faster-whisper", "int8", "1 (fixed work)", "-"),
    ]
    for row in rows:
        best, median = _min_median(row["latency ms per utterance"])
        assert 0 < best <= median <= float(row["slowest ms"]) + 1  # one run: the mean is at most the slowest
        assert 0 < _min_median(row["real-time factor"])[0]
    for row in rows[:2]:  # real weights: scored
        assert all(row[c].endswith("%") and 0 <= float(row[c][:-1]) <= 100 for c in ("WER espeak", "WER jfk"))
    for row in rows[2:]:  # fixed work: nothing to score
        assert row["WER espeak"] == row["WER jfk"] == "-"
