"""Describe mode in a real browser, by keyboard alone: a photo, Alt+Shift+D, a follow-up,
the task and detail chosen with keys and still chosen after a reload. shapes-vlm answers."""

from __future__ import annotations

import pytest

from accessibility import choose_in_menu
from fixture_models import draw_test_image
from test_browser import chromium, needs_chromium

pytestmark = pytest.mark.browser


def _focus_by_tab(page, selector: str, presses: int = 80) -> None:
    """Press Tab until the focus is inside `selector`, as a keyboard user would."""
    for _ in range(presses):
        if page.evaluate("(s) => !!document.activeElement?.closest(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


@needs_chromium
def test_describe_by_keyboard_follow_up_and_the_choice_is_remembered(shapes_app, tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / "scene.png"
    draw_test_image("circle", "red").save(photo)
    with chromium() as page:
        page.goto(shapes_app, wait_until="load")
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        # The task: Identify (the one shapes-vlm was trained to answer), picked with the keyboard.
        _focus_by_tab(page, "#describe-task")
        page.keyboard.type("Identify")
        page.wait_for_timeout(300)  # the menu filters as it is typed
        page.keyboard.press("Enter")
        expect(page.locator("#describe-task input")).to_have_value("Identify object and colour")
        # The photo goes in the box (a file chooser is the system's, so it is set directly).
        page.locator("#message input[type=file]").set_input_files(str(photo))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        page.locator("#message textarea").focus()
        page.keyboard.press("Alt+Shift+D")
        answers = page.locator('[data-testid="bot"]')
        expect(answers.last).to_have_text("red", timeout=30_000)
        expect(page.locator("#mmchat-live")).to_have_text("red", timeout=15_000)
        # The chat shows the task's name, not its long prompt.
        expect(page.locator('[data-testid="user"]').last).to_contain_text("Identify object and colour (brief)")
        # A follow-up in words, about the same photo.
        page.locator("#message textarea").focus()
        page.keyboard.type("What shape is it?")
        page.keyboard.press("Enter")
        expect(answers).to_have_count(2, timeout=30_000)
        expect(answers.last).to_have_text("circle", timeout=30_000)
        # Describe again with an empty box: the last photo again.
        page.keyboard.press("Alt+Shift+D")
        expect(answers).to_have_count(3, timeout=30_000)
        expect(answers.last).to_have_text("red", timeout=30_000)
        # Verbosity by keys: Brief -> Normal.
        _focus_by_tab(page, "#describe-verbosity")
        choose_in_menu(page, "Normal")
        expect(page.locator("#describe-verbosity input")).to_have_value("Normal")
        page.wait_for_timeout(500)  # the choice is saved by its change event
        page.reload(wait_until="load")
        expect(page.locator("#describe-task input")).to_have_value("Identify object and colour", timeout=30_000)
        expect(page.locator("#describe-verbosity input")).to_have_value("Normal")
        assert not page.errors, f"console errors: {page.errors}"
    # Kept for the person, not the browser: another browser (a fresh profile) has it too.
    with chromium() as other:
        other.goto(shapes_app, wait_until="load")
        expect(other.locator("#describe-task input")).to_have_value("Identify object and colour", timeout=30_000)
        expect(other.locator("#describe-verbosity input")).to_have_value("Normal")
