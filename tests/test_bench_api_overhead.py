"""bench/api_overhead.py runs end to end on the CPU (--quick) and prints both tables, with no failed request.

Only the tables' shape, the token counts and the error counts are checked here;
speed is the benchmark's business, not a test's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK_TOKENS = 4  # what --quick asks of every answer


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Each Markdown table of `text` as rows keyed by its header."""
    tables, rows, header = [], None, None
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if header is None:
                header, rows = _cells(line), []
            elif not line.startswith("|---"):
                rows.append(dict(zip(header, _cells(line))))
        elif header is not None:
            tables.append(rows)
            header = None
    return tables


def _min_median(cell: str) -> tuple[float, float]:
    best, median = (float(v) for v in cell.split(" / "))
    return best, median


def test_quick_run_prints_both_tables_without_errors(tmp_path):
    out = tmp_path / "tables.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see test_bench_generation.py
    result = subprocess.run([sys.executable, "bench/api_overhead.py", "--quick", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text in result.stdout
    assert "ERROR" not in result.stderr
    overhead, load = _tables(text)

    assert [row["way"] for row in overhead] == ["engine.stream", "turn.submit", "HTTP API"]
    # The same prompt every way: the turn layer and the API build what the direct call gets.
    assert len({row["prompt tokens"] for row in overhead}) == 1
    assert {row["tokens"] for row in overhead} == {str(QUICK_TOKENS)}
    for row in overhead:
        for column in ("first token ms", "total ms"):
            best, median = _min_median(row[column])
            assert 0 < best <= median
        for column in ("first token vs direct", "total vs direct"):
            assert all(value > 0 for value in _min_median(row[column]))
    assert overhead[0]["first token vs direct"] == overhead[0]["total vs direct"] == "1.00 / 1.00"

    assert [(row["admission"], row["clients"]) for row in load] == [
        (admission, clients) for admission in ("1", "4") for clients in ("1", "4", "16")]
    for row in load:
        assert row["requests"] == row["clients"]  # --quick: one request each
        assert row["errors"] == "0"
        assert float(row["requests/s"]) > 0
        # Every answer is exactly QUICK_TOKENS long, so tokens/s follows requests/s.
        assert abs(float(row["tokens/s"]) - QUICK_TOKENS * float(row["requests/s"])) <= 1 + 0.02 * float(row["tokens/s"])
        for column in ("first token p50 / p95 ms", "total p50 / p95 ms"):
            p50, p95 = (float(v) for v in row[column].split(" / "))
            assert 0 < p50 <= p95
    assert "Left behind after the last request: 0 API threads, 0 request folders." in text
