"""Logging in, in a real browser: one rule for every log-in (a new chat, the history listed
and current from its first question), and a reload reopens the chat that was open."""

from __future__ import annotations

import re

import pytest

from test_browser import chromium, needs_chromium
from test_users import _log_in_by_keyboard, auth_server  # noqa: F401 (auth_server: the fixture)

pytestmark = pytest.mark.browser


def _ask(page, text: str) -> None:
    from playwright.sync_api import expect

    answers = page.locator('[data-testid="bot"]').count()
    page.locator("#message textarea").fill(text)
    page.locator("#message textarea").press("Enter")
    expect(page.locator('[data-testid="bot"]')).to_have_count(answers + 1, timeout=60_000)
    expect(page.locator("#stop-button")).to_have_class(re.compile(r"\bidle\b"), timeout=60_000)


@needs_chromium
def test_every_log_in_starts_a_new_chat_that_is_listed_from_its_first_question(auth_server):  # noqa: F811
    from playwright.sync_api import expect

    url = auth_server.url
    listed = "#conversation-list button.conversation"
    with chromium() as page:
        _log_in_by_keyboard(page, url, "alice")
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=60_000)
        expect(page.locator("#account")).to_have_text("Signed in as alice", timeout=15_000)  # beside Log out
        _ask(page, "First chat's question")
        expect(page.locator(listed)).to_have_count(1, timeout=15_000)

        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(re.compile(r".*/login$"), timeout=30_000)
        _log_in_by_keyboard(page, url, "alice")
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=60_000)
        # Logged in again, on this browser as on any: a new chat, the earlier one in the list.
        expect(page.locator(listed)).to_have_count(1, timeout=15_000)
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        _ask(page, "Second chat's question")
        # Listed at once, marked as the open one, its title in the title box.
        expect(page.locator(listed)).to_have_count(2, timeout=15_000)
        expect(page.locator('#conversation-list [aria-current="true"]')).to_have_count(1)
        expect(page.locator('#conversation-list [aria-current="true"]')).to_contain_text("Second chat")
        expect(page.locator("#conversation-title input")).to_have_value(re.compile("Second chat"))

        page.reload(wait_until="load")  # a reload keeps the chat that was open
        expect(page.locator('[data-testid="user"]').last).to_contain_text("Second chat's question", timeout=30_000)
        assert not page.errors, f"console errors: {page.errors}"
