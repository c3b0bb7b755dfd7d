"""bench/generation.py runs end to end on the CPU (tiny shapes) and prints a sane table.

The harness is meant for a GPU session that gets one try at it, so CI keeps it
working: every row it should print is there, the numbers are positive, and the real
image processor settings give the real number of vision tokens for both photos.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Qwen3-VL merges 2x2 patches of 16 pixels: 448x448 is 28x28 patches, 196 tokens; the
# 4000x3000 photo fits the app's 802,816-pixel budget as 1034x775, which the processor
# rounds to 1024x768, 64x48 patches, 768 tokens.
VISION_TOKENS = {"448x448": 196, "12MP": 768}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_tiny_cpu_run_prints_every_row_with_sane_numbers(tmp_path):
    out = tmp_path / "table.md"
    # One thread: on a busy 2-core machine OpenMP's second thread makes every
    # attention call wait about 10 ms, which turns a 30 s run into minutes.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "bench/generation.py", "--tiny", "--device", "cpu", "--runs", "1",
         "--new-tokens", "16", "--out", str(out), "--profile", str(tmp_path / "profiles")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text in result.stdout  # the file holds what was printed

    lines = text.splitlines()
    header = _cells(next(line for line in lines if line.startswith("| model")))
    rows = [dict(zip(header, _cells(line))) for line in lines if line.startswith("| ") and "---" not in line]
    rows = [row for row in rows if row["model"] != "model"]
    assert {(r["model"], r["path"], r["photo"]) for r in rows} == {
        (model, path, photo) for model in ("4b", "8b") for path in ("bf16", "nf4", "int4") for photo in VISION_TOKENS
    }
    for row in rows:
        assert int(row["vision tok"]) == VISION_TOKENS[row["photo"]]
        assert int(row["prompt tok"]) - int(row["vision tok"]) in range(40, 70)  # about 50 text tokens
        assert row["weights"] == {"bf16": "float32", "nf4": "nf4 (float32)", "int4": "int4 (float32)"}[row["path"]]
        # The app compiles its decoder on CUDA only; on the CPU the same loop runs eagerly.
        assert row["compiled"] == ("no" if row["path"] == "int4" else "-")
        for column in ("TTFT ms", "decode tok/s", "prep ms"):
            best, median = (float(v) for v in row[column].split(" / "))
            assert best > 0 and median > 0, (column, row)
        assert float(row["peak GB"]) > 0
    for path in ("bf16-static-compile", "nf4-static-compile", "int4-static-compile"):
        assert f"- skipped {path}: torch.compile" in text
    assert "failed" not in text
    # One profiled call per model and path, as a table of ops by time.
    profiles = sorted(p.name for p in (tmp_path / "profiles").iterdir())
    assert profiles == sorted(f"{m}-{p}.txt" for m in ("4b", "8b") for p in ("bf16", "nf4", "int4"))
    assert "Self CPU" in (tmp_path / "profiles" / "4b-int4.txt").read_text()
