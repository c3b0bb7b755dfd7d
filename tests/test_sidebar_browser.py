"""The history sidebar in a real browser, on the page served on loopback with shapes-vlm answering:
three chats, rename one, search, reopen the first and continue it, delete one, reload; and on a phone."""

from __future__ import annotations

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
    return [label.inner_text().strip() for label in page.locator("#conversation-list label").all()]


@needs_chromium
def test_the_sidebar_keeps_finds_renames_reopens_and_deletes_conversations(shapes_app, pictures):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(shapes_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        conversations = page.get_by_role("radiogroup", name="Conversations")
        expect(conversations).to_be_visible(timeout=15_000)
        new_chat = page.get_by_role("button", name="New chat")

        # Three chats; each is listed after its question, newest first, and New chat keeps the others.
        for index, (question, *_, answer) in enumerate(CHATS):
            if index:
                new_chat.click()
                expect(page.locator('[data-testid="user"]')).to_have_count(0, timeout=15_000)
                expect(page.locator("#message textarea")).to_be_focused()
            _ask(page, question, pictures[index])
            _answered(page, 1, answer)
            expect(conversations.get_by_role("radio")).to_have_count(index + 1, timeout=15_000)
        expect(conversations.get_by_role("radio")).to_have_count(3)
        assert _titles(page) == [question for question, *_ in reversed(CHATS)]
        expect(conversations.get_by_role("radio", name=CHATS[2][0])).to_be_checked()  # the open one

        # Rename the open one; the list and the live region say so.
        title = page.get_by_role("textbox", name="Title")
        expect(title).to_have_value(CHATS[2][0])
        title.fill("The stop sign")
        title.press("Enter")
        expect(page.locator("#mmchat-live")).to_have_text("Renamed to “The stop sign”.", timeout=15_000)
        expect(conversations.get_by_role("radio", name="The stop sign")).to_be_checked(timeout=15_000)

        # Search by a word of a question (not of any title).
        search = page.get_by_label("Search conversations")
        search.fill("written")
        expect(conversations.get_by_role("radio")).to_have_count(1, timeout=15_000)
        assert _titles(page) == ["The stop sign"]
        search.fill("colour")
        expect(conversations.get_by_role("radio", name=CHATS[0][0])).to_be_visible(timeout=15_000)
        expect(conversations.get_by_role("radio")).to_have_count(1)

        # Reopen the first and continue it: its photo is what the follow-up is about.
        conversations.get_by_role("radio", name=CHATS[0][0]).click()
        expect(page.locator('[data-testid="user"]', has_text=CHATS[0][0])).to_have_count(1, timeout=15_000)
        expect(page.locator('[data-testid="bot"]').first).to_have_text("red")
        expect(page.locator("#mmchat-live")).to_have_text(f"Opened “{CHATS[0][0]}”.", timeout=15_000)
        expect(page.locator("#message textarea")).to_be_focused()
        search.fill("")
        expect(conversations.get_by_role("radio")).to_have_count(3, timeout=15_000)
        _ask(page, "What shape was it?")
        _answered(page, 2, "circle")
        expect(page.locator('[data-testid="user"] img')).to_have_count(1)  # the first chat's photo, still there
        page.wait_for_function("() => document.querySelector('#conversation-list label span').innerText"
                               f" === {CHATS[0][0]!r}", timeout=15_000)  # continued: now the most recent
        assert _titles(page) == [CHATS[0][0], "The stop sign", CHATS[1][0]]

        # By keyboard: arrows move through the list, opening each, and focus stays there; Enter goes to the message box.
        first_choice = conversations.get_by_role("radio", name=CHATS[0][0])
        first_choice.focus()
        page.keyboard.press("ArrowDown")
        expect(page.locator('[data-testid="bot"]').last).to_have_text("STOP", timeout=15_000)
        expect(conversations.get_by_role("radio", name="The stop sign")).to_be_focused()
        expect(conversations.get_by_role("radio", name="The stop sign")).to_be_checked()
        page.keyboard.press("ArrowDown")
        expect(page.locator('[data-testid="bot"]').last).to_have_text("square", timeout=15_000)
        page.keyboard.press("Enter")
        expect(page.locator("#message textarea")).to_be_focused()

        # Delete the open one (the second chat); Undo is offered, and has the focus.
        page.get_by_role("button", name="Delete this conversation").click()
        expect(page.locator("#mmchat-live")).to_have_text(f"Deleted “{CHATS[1][0]}”. Undo brings it back.",
                                                          timeout=15_000)
        undo = page.get_by_role("button", name=f"Undo: bring back “{CHATS[1][0]}”")
        expect(undo).to_be_visible()
        expect(undo).to_be_focused()
        expect(conversations.get_by_role("radio")).to_have_count(2, timeout=15_000)
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        undo.click()  # back, and open again
        expect(conversations.get_by_role("radio")).to_have_count(3, timeout=15_000)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("square", timeout=15_000)
        expect(undo).to_be_hidden()
        page.get_by_role("button", name="Delete this conversation").click()
        expect(conversations.get_by_role("radio")).to_have_count(2, timeout=15_000)

        # Reopen the first, then reload: the list is kept, and so is the open conversation.
        conversations.get_by_role("radio", name=CHATS[0][0]).click()
        expect(page.locator('[data-testid="bot"]')).to_have_count(2, timeout=15_000)
        _reload(page)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("circle", timeout=30_000)
        expect(page.locator('[data-testid="bot"]')).to_have_count(2)
        expect(conversations.get_by_role("radio")).to_have_count(2, timeout=15_000)
        assert _titles(page) == [CHATS[0][0], "The stop sign"]
        expect(conversations.get_by_role("radio", name=CHATS[0][0])).to_be_checked()
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
        expect(page.locator("#conversation-list label")).to_have_count(2, timeout=15_000)

        page.set_viewport_size({"width": 390, "height": 844})
        _reload(page)
        toggle = page.get_by_role("button", name="Conversations sidebar")
        expect(toggle).to_have_attribute("aria-expanded", "false", timeout=30_000)
        message = page.locator("#message textarea")
        expect(message).to_be_in_viewport()
        expect(page.locator("#conversation-list")).not_to_be_in_viewport()

        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        choice = page.get_by_role("radiogroup", name="Conversations").get_by_role("radio", name=CHATS[0][0])
        expect(choice).to_be_in_viewport()
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
        conversations = page.get_by_role("radiogroup", name="Conversations")
        expect(conversations.get_by_role("radio", name=question)).to_have_count(2)  # the original and the copy
        expect(conversations.locator("input[type=radio]:checked")).to_have_count(1)  # the copy, open
        expect(page.locator("#message textarea")).to_be_focused()
        _ask(page, "What shape was it?")  # the imported conversation goes on, about its own photo
        _answered(page, 2, "circle")
        assert not page.errors, f"console errors: {page.errors}"
