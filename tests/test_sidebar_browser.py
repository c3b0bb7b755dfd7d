"""The history sidebar in a real browser, on the page served on loopback with shapes-vlm answering:
three chats, rename one, search, reopen the first and continue it, delete one, reload; and on a phone.
The list is a navigation list of buttons grouped by day, the open one marked aria-current."""

from __future__ import annotations

import re

import pytest

from fixture_models import draw_test_image
from test_browser import chromium, needs_chromium

pytestmark = pytest.mark.browser

CHATS = [  # (question, the picture's shape, colour, count, word, shapes-vlm's answer)
    ("What colour is the shape?", "circle", "red", 1, None, "red"),
    ("What shape is it?", "square", "yellow", 1, None, "square"),
    ("What is written in the image?", "star", "green", 1, "STOP", "STOP"),
]


@pytest.fixture
def pictures(tmp_path):
    paths = []
    for index, (_, shape, colour, count, word, _) in enumerate(CHATS):
        path = tmp_path / f"scene-{index}.png"
        draw_test_image(shape, colour, count=count, word=word).save(path)
        paths.append(path)
    return paths


def _ask(page, text, picture=None):
    from playwright.sync_api import expect

    if picture is not None:
        page.locator("#message input[type=file]").set_input_files(str(picture))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
    page.locator("#message textarea").fill(text)
    page.locator("#message textarea").press("Enter")


def _answered(page, questions: int, answer: str):
    """The chat shows `questions` answers, the last one `answer`, and it was announced."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="bot"]')).to_have_count(questions, timeout=30_000)
    expect(page.locator('[data-testid="bot"]').last).to_have_text(answer, timeout=30_000)
    expect(page.locator("#mmchat-live")).to_have_text(answer, timeout=15_000)


def _reload(page) -> None:
    """Reload; what the old page logged as it was torn down (a list refresh it was still
    waiting for, aborted) is no error of the app's."""
    page.reload(wait_until="load")
    page.errors.clear()


def _titles(page) -> list[str]:
    return [title.inner_text().strip() for title in page.locator("#conversation-list .conversation-title").all()]


def _list(page):
    """The history list, as a screen reader finds it, and the open conversation in it."""
    conversations = page.get_by_role("navigation", name="Conversations")
    return conversations, conversations.locator('button[aria-current="true"]')


@needs_chromium
def test_the_sidebar_keeps_finds_renames_reopens_and_deletes_conversations(shapes_app, pictures):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(shapes_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        conversations, current = _list(page)
        expect(conversations).to_be_visible(timeout=15_000)
        expect(conversations).to_contain_text("Your conversations appear here after their first question.")
        new_chat = page.get_by_role("button", name="New chat")

        # Three chats; each is listed after its question, newest first, and New chat keeps the others.
        for index, (question, *_, answer) in enumerate(CHATS):
            if index:
                new_chat.click()
                expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=15_000)
                expect(page.locator("#message textarea")).to_be_focused()
            _ask(page, question, pictures[index])
            _answered(page, 1, answer)
            expect(conversations.get_by_role("button")).to_have_count(index + 1, timeout=15_000)
        expect(conversations.get_by_role("button")).to_have_count(3)
        assert _titles(page) == [question for question, *_ in reversed(CHATS)]
        expect(current).to_have_count(1)
        expect(current).to_contain_text(CHATS[2][0])  # the open one
        expect(conversations.get_by_role("heading", name="Today")).to_be_visible()  # grouped by day
        expect(conversations.locator("time").first).to_have_text(re.compile(r"^\d\d:\d\d$"))
        expect(conversations).not_to_contain_text("Your conversations appear here")

        # Rename the open one; the list and the live region say so.
        title = page.get_by_role("textbox", name="Title")
        expect(title).to_have_value(CHATS[2][0])
        title.fill("The stop sign")
        title.press("Enter")
        expect(page.locator("#mmchat-live")).to_have_text("Renamed to “The stop sign”.", timeout=15_000)
        expect(current).to_contain_text("The stop sign", timeout=15_000)

        # Search by a word of a question (not of any title).
        search = page.get_by_label("Search conversations")
        search.fill("written")
        expect(conversations.get_by_role("button")).to_have_count(1, timeout=15_000)
        assert _titles(page) == ["The stop sign"]
        # ... and under it the words around the match, the searched word marked.
        expect(conversations.locator(".snippet")).to_contain_text("What is written in the image?")
        expect(conversations.locator(".snippet mark")).to_have_text("written")
        search.fill("colour")
        expect(conversations.get_by_role("button", name=CHATS[0][0])).to_be_visible(timeout=15_000)
        expect(conversations.get_by_role("button")).to_have_count(1)

        # Reopen the first and continue it: its photo is what the follow-up is about.
        conversations.get_by_role("button", name=CHATS[0][0]).click()
        expect(page.locator('[data-testid="user"]', has_text=CHATS[0][0])).to_have_count(1, timeout=15_000)
        expect(page.locator('[data-testid="bot"]').first).to_have_text("red")
        expect(page.locator("#mmchat-live")).to_have_text(f"Opened “{CHATS[0][0]}”.", timeout=15_000)
        expect(page.locator("#message textarea")).to_be_focused()
        search.fill("")
        expect(conversations.get_by_role("button")).to_have_count(3, timeout=15_000)
        _ask(page, "What shape was it?")
        _answered(page, 2, "circle")
        expect(page.locator('[data-testid="user"] img')).to_have_count(1)  # the first chat's photo, still there
        expect(conversations.locator(".conversation-title").first).to_have_text(CHATS[0][0],
                                                                                timeout=15_000)  # continued: now the most recent
        assert _titles(page) == [CHATS[0][0], "The stop sign", CHATS[1][0]]

        # By keyboard: the arrows go through the list without opening anything, and a refresh of
        # the list leaves the focus where it is; Enter opens one and goes on to the message box.
        conversations.get_by_role("button", name=CHATS[0][0]).focus()
        page.keyboard.press("ArrowDown")
        expect(conversations.get_by_role("button", name="The stop sign")).to_be_focused()
        page.keyboard.press("ArrowDown")
        second_chat = conversations.get_by_role("button", name=CHATS[1][0])
        expect(second_chat).to_be_focused()
        expect(page.locator('[data-testid="bot"]').last).to_have_text("circle")  # still the first chat
        page.get_by_role("textbox", name="Title").fill("Red circle")
        second_chat.focus()
        page.evaluate("document.querySelector('#rename-conversation').click()")  # the list refreshes meanwhile
        expect(current).to_contain_text("Red circle", timeout=15_000)
        expect(second_chat).to_be_focused()
        page.keyboard.press("Home")
        expect(conversations.get_by_role("button", name="Red circle")).to_be_focused()
        page.keyboard.press("End")
        expect(second_chat).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator('[data-testid="bot"]').last).to_have_text("square", timeout=15_000)
        expect(current).to_contain_text(CHATS[1][0])
        expect(page.locator("#message textarea")).to_be_focused()

        # Delete the open one (the second chat); Undo is offered, and has the focus.
        page.get_by_role("button", name="Delete this conversation").click()
        expect(page.locator("#mmchat-live")).to_have_text(f"Deleted “{CHATS[1][0]}”. Undo brings it back.",
                                                          timeout=15_000)
        undo = page.get_by_role("button", name=f"Undo: bring back “{CHATS[1][0]}”")
        expect(undo).to_be_visible()
        expect(undo).to_be_focused()
        expect(conversations.get_by_role("button")).to_have_count(2, timeout=15_000)
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        undo.click()  # back, and open again
        expect(conversations.get_by_role("button")).to_have_count(3, timeout=15_000)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("square", timeout=15_000)
        expect(undo).to_be_hidden()
        page.get_by_role("button", name="Delete this conversation").click()
        expect(conversations.get_by_role("button")).to_have_count(2, timeout=15_000)

        # Reopen the first, then reload: the list is kept, and so is the open conversation.
        conversations.get_by_role("button", name="Red circle").click()
        expect(page.locator('[data-testid="bot"]')).to_have_count(2, timeout=15_000)
        _reload(page)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("circle", timeout=30_000)
        expect(page.locator('[data-testid="bot"]')).to_have_count(2)
        expect(conversations.get_by_role("button")).to_have_count(2, timeout=15_000)
        assert _titles(page) == ["Red circle", "The stop sign"]
        expect(current).to_contain_text("Red circle")
        _ask(page, "What colour was it?")  # and it goes on where it was
        _answered(page, 3, "red")
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_on_a_phone_the_sidebar_starts_closed_and_closes_when_a_conversation_is_chosen(shapes_app, pictures):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(shapes_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        for index, (question, *_, answer) in enumerate(CHATS[:2]):
            if index:
                page.get_by_role("button", name="New chat").click()
                expect(page.locator('[data-testid="bot"]')).to_have_count(0, timeout=15_000)  # the box is cleared too
            _ask(page, question, pictures[index])
            _answered(page, 1, answer)
        expect(page.locator("#conversation-list button.conversation")).to_have_count(2, timeout=15_000)

        page.set_viewport_size({"width": 390, "height": 844})
        _reload(page)
        toggle = page.get_by_role("button", name="Conversations sidebar")
        expect(toggle).to_have_attribute("aria-expanded", "false", timeout=30_000)
        message = page.locator("#message textarea")
        expect(message).to_be_in_viewport()
        expect(page.locator("#conversation-list")).not_to_be_in_viewport()

        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        choice = _list(page)[0].get_by_role("button", name=CHATS[0][0])
        expect(choice).to_be_in_viewport()
        # Once the sidebar has slid open, the whole of each row, and the close button, fit the phone's width.
        page.wait_for_function("""() => [...document.querySelectorAll('#conversation-list button, #history .toggle-button')]
            .every((e) => { const r = e.getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth; })""",
                               timeout=15_000)
        assert choice.bounding_box()["height"] >= 24  # big enough to tap (WCAG 2.5.8)
        expect(toggle).to_be_in_viewport(ratio=1)
        choice.click()
        expect(toggle).to_have_attribute("aria-expanded", "false", timeout=15_000)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("red", timeout=15_000)
        expect(message).to_be_in_viewport()
        expect(message).to_be_focused()
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_import_takes_back_an_export_and_opens_it(shapes_app, pictures, tmp_path):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(shapes_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        question, *_, answer = CHATS[0]
        _ask(page, question, pictures[0])
        _answered(page, 1, answer)
        with page.expect_download(timeout=30_000) as download:
            page.get_by_role("button", name="Export").click()
        exported = tmp_path / download.value.suggested_filename
        download.value.save_as(exported)

        page.get_by_role("button", name="New chat").click()
        expect(page.locator('[data-testid="bot"]')).to_have_count(0, timeout=15_000)
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name="Import conversation").click()
        chooser.value.set_files(str(exported))
        expect(page.locator("#mmchat-live")).to_have_text(f"Imported “{question} (imported)”; it is open.", timeout=30_000)
        expect(page.locator('[data-testid="bot"]').last).to_have_text(answer)
        expect(page.locator('[data-testid="user"] img')).to_have_count(1)  # its photo came with it
        conversations, current = _list(page)
        expect(conversations.get_by_role("button", name=question)).to_have_count(2)  # the original and the copy
        expect(current).to_have_count(1)
        expect(current).to_contain_text(f"{question} (imported)")  # the copy, open
        expect(page.locator("#message textarea")).to_be_focused()
        _ask(page, "What shape was it?")  # the imported conversation goes on, about its own photo
        _answered(page, 2, "circle")
        assert not page.errors, f"console errors: {page.errors}"
