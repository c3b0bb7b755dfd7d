"""Count axe-core's WCAG 2.2 AA failures in each view of the page, as a Markdown table.

    .venv/bin/python tests/a11y_audit.py > axe_counts.md
    A11Y_TAGS=best-practice .venv/bin/python tests/a11y_audit.py > axe_advice.md

The views are opened exactly as tests/test_accessibility.py opens them (shapes-vlm answers);
every impact is counted, not only the serious and critical ones the tests fail on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accessibility import axe_violations  # noqa: E402
from conftest import make_services  # noqa: E402
from test_accessibility import PHONE, chat_view, settings_view, voice_app, voice_view  # noqa: E402
from test_browser import _serve, chromium  # noqa: E402

# A11Y_TAGS=best-practice counts axe's advice beyond WCAG (one h1, landmarks) instead.
TAGS = os.environ.get("A11Y_TAGS", "").split(",") if os.environ.get("A11Y_TAGS") else None


def main() -> None:
    with contextlib.redirect_stdout(sys.stderr):  # Gradio says where it runs on stdout; the table goes there
        rows = audit()
    print("| view | rule | impact | nodes |\n| --- | --- | --- | --- |")
    for view, violation in rows:
        print(f"| {view} | {violation.rule} | {violation.impact} | {len(violation.nodes)} |" if violation
              else f"| {view} | (none) | | 0 |")
    print("\nFailing nodes:\n")
    seen = set()
    for view, violation in rows:
        if violation and (violation.rule, violation.nodes) not in seen:
            seen.add((violation.rule, violation.nodes))
            print(f"```\n[{view}] {violation.describe()}\n```")


def audit() -> list:
    """(view, violation) for each rule each view fails; (view, None) for a view that fails none."""
    from fixture_models import shapes_vlm_path
    from mmchat.config import Config
    from mmchat.engine.local import create_local_engine
    from mmchat.stt import create_speech_to_text
    from mmchat.tts import create_text_to_speech

    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        config = Config(device="cpu", data_dir=folder / "data", temperature=0.0, stt_backend="none",
                        tts_backend="none", max_new_tokens=8)
        url, demo = _serve(make_services(config, engine))
        try:
            for view, open_view, viewport in (("chat (one answered photo question)", chat_view, None),
                                              ("Settings open", settings_view, None),
                                              ("phone 390x844", chat_view, PHONE)):
                with chromium() as page:
                    if viewport:
                        page.set_viewport_size(viewport)
                    open_view(page, url, folder)
                    found = axe_violations(page, tags=TAGS)
                rows += [(view, v) for v in found] or [(view, None)]
        finally:
            demo.close()
        stt = create_speech_to_text(Config(device="cpu", stt_backend="faster-whisper", speech_language="en"))
        tts = create_text_to_speech(Config(device="cpu", data_dir=folder / "voices"))
        with voice_app(config, engine, stt, tts, folder) as (page, url):
            voice_view(page, url)
            found = axe_violations(page, tags=TAGS)
        rows += [("voice mode on", v) for v in found] or [("voice mode on", None)]

    return rows


if __name__ == "__main__":
    main()
