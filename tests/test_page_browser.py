"""The page as people expect a chat app to be, in a real browser: the conversation fills
the window with the message box pinned under it, Stop for as long as the answer is
heard, one Enter one question, the same photo twice, and messages named as people say them."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import make_services, voice_services_for, with_config
from test_browser import _serve, chromium, needs_chromium

pytestmark = pytest.mark.browser
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"


def _open(page, url: str, width: int = 1400, height: int = 900) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size({"width": width, "height": height})
    page.goto(url, wait_until="load", timeout=60_000)
    expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)


def _ask(page, text: str) -> None:
    page.locator("#message textarea").fill(text)
    page.locator("#message textarea").press("Enter")


def _answered(page, count: int) -> None:
    """Waits for the count-th answer to be finished (its Stop gone, the box free)."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="bot"]')).to_have_count(count, timeout=60_000)
    expect(page.locator("#stop-button")).to_be_hidden(timeout=60_000)


@pytest.fixture
def page_app(config, qwen_engine):
    url, demo = _serve(make_services(with_config(config, max_new_tokens=24), qwen_engine))
    try:
        yield url
    finally:
        demo.close()


@needs_chromium
@pytest.mark.parametrize("width, height", [(1400, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_conversation_scrolls_inside_the_window_and_the_box_stays_at_the_bottom(page_app, width, height):
    with chromium() as page:
        _open(page, page_app, width, height)
        if width < 600:
            page.keyboard.press("Escape")
            toggle = page.locator(".sidebar .toggle-button")
            if toggle.count() and page.locator(".sidebar.open").count():
                toggle.click()  # on a phone the history opens over the chat; close it
        for number in range(5):
            _ask(page, f"Question {number}: tell me about the weather today, in several words.")
            _answered(page, number + 1)
        box = page.locator("#message textarea").bounding_box()
        chat = page.locator('#conversation [role="log"]')
        # The box is in the window, at its bottom part, without scrolling the page ...
        assert page.evaluate("() => window.scrollY") == 0
        assert box["y"] + box["height"] <= height, (box, height)
        assert box["y"] > height * 0.5, (box, height)
        # ... and the conversation, longer than its room, scrolls inside itself, to its newest message.
        sizes = chat.evaluate("e => [e.scrollHeight, e.clientHeight, e.scrollTop]")
        assert sizes[0] > sizes[1], sizes
        newest = page.locator('[data-testid="bot"]').last.bounding_box()
        assert newest["y"] < box["y"], (newest, box)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_a_quick_double_enter_sends_one_question(page_app):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        box = page.locator("#message textarea")
        box.fill("What colour is the sky?")
        box.press("Enter")
        box.press("Enter")  # before the server has emptied the box
        _answered(page, 1)
        page.wait_for_timeout(1000)
        expect(page.locator('[data-testid="user"]')).to_have_count(1)
        expect(page.locator('[data-testid="bot"]').last).not_to_contain_text("(stopped)")
        # The same words typed again afterwards are a new question, and sent.
        _ask(page, "What colour is the sky?")
        _answered(page, 2)
        expect(page.locator('[data-testid="user"]')).to_have_count(2)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_the_same_photo_picked_again_is_taken_again(page_app, photos):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        for number in (1, 2):
            with page.expect_file_chooser() as chooser:
                page.locator("#message .upload-button").click()
            # The picker opens on an emptied input, so picking the same file is a change.
            assert page.locator('#message input[type="file"]').evaluate("input => input.files.length") == 0
            chooser.value.set_files(str(photos[0]))
            expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
            _ask(page, f"What is in photo {number}?")
            _answered(page, number)
            expect(page.locator('[data-testid="user"] img')).to_have_count(number, timeout=15_000)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_messages_are_named_as_people_say_them_and_nothing_offers_to_share(page_app, photos):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        page.locator('#message input[type="file"]').set_input_files(str(photos[0]))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        _ask(page, "What colour is the shape?")
        _answered(page, 1)
        answer = page.locator('[data-testid="bot"]').last.inner_text().strip()
        names = page.locator('#conversation [data-testid="user"], #conversation [data-testid="bot"]').evaluate_all(
            "messages => messages.map(m => m.getAttribute('aria-label'))")
        assert names == ["You: photo", "You: What colour is the shape?", f"mmchat: {answer}"], names
        assert page.locator('#conversation [role="log"]').get_attribute("aria-label") == "Conversation"
        # Gradio's Share works only on its own hosting; here it could only fail.
        assert page.locator("#conversation").get_by_role("button", name="Share").count() == 0
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_an_example_puts_its_question_and_photo_in_the_box(page_app):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        page.locator("#conversation").get_by_role("button", name="Select example 3: Read the text on this page.").click()
        expect(page.locator("#message textarea")).to_have_value("Read the text on this page.", timeout=15_000)
        expect(page.locator("#message img")).to_have_count(1)
        page.locator("#message textarea").press("Enter")
        _answered(page, 1)
        expect(page.locator('[data-testid="user"] img')).to_have_count(1)
        assert not page.errors, f"console errors: {page.errors}"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
@needs_chromium
@pytest.mark.parametrize("how", ["Stop", "Escape"])
def test_stop_stays_while_the_answer_is_still_spoken_and_silences_it(config, qwen_engine, speech_to_text,
                                                                     text_to_speech, how):
    from playwright.sync_api import expect

    # A long answer of random words: its text is done seconds before its speech.
    services = voice_services_for(with_config(config, speak_answers=True, max_new_tokens=96),
                                  qwen_engine, speech_to_text, text_to_speech)
    url, demo = _serve(services)
    stop = None
    try:
        with chromium(AUTOPLAY) as page:
            _open(page, url)
            stop = page.locator("#stop-button")
            _ask(page, "Tell me a long story.")
            playing = "() => [...document.querySelectorAll('#speech audio')].some(a => !a.paused && !a.ended)"
            idle = re.compile(r"\bidle\b")
            expect(stop).not_to_have_class(idle, timeout=30_000)  # the answer is being written ...
            expect(stop).to_have_class(idle, timeout=120_000)  # ... its text is done ...
            page.wait_for_function(playing, timeout=30_000)
            expect(stop).to_be_visible()  # ... but it is still being heard: Stop is there
            expect(page.locator("#message .submit-button")).to_be_hidden()  # in Send's place
            if how == "Stop":
                stop.click()
            else:
                page.locator("#message textarea").focus()
                page.keyboard.press("Escape")
            page.wait_for_function(f"() => !({playing})()", timeout=5_000)
            expect(stop).to_be_hidden()
            expect(page.locator("#message .submit-button")).to_be_visible()
            page.wait_for_timeout(1500)
            assert not page.evaluate(playing), "nothing more is played after Stop"
            assert not page.errors, f"console errors: {page.errors}"
    finally:
        demo.close()


@needs_chromium
def test_a_file_it_cannot_take_yet_is_refused_in_its_own_words_and_the_question_kept(page_app, tmp_path):
    from playwright.sync_api import expect

    document = tmp_path / "notes.pdf"
    document.write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n")
    with chromium() as page:
        _open(page, page_app)
        page.locator('#message input[type="file"]').set_input_files(str(document))
        page.locator("#message textarea").fill("What does this say?")
        page.locator("#message textarea").press("Enter")
        toast = page.locator(".toast-body").last
        expect(toast).to_contain_text("mmchat can't take notes.pdf yet", timeout=30_000)
        expect(toast).to_contain_text("photos (JPEG, PNG")
        expect(page.locator("body")).not_to_contain_text("Invalid file type")
        expect(page.locator("#message textarea")).to_have_value("What does this say?")
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        # Without the file, the same words are a question like any other.
        page.locator('#message [aria-label="Remove file"], #message .delete-button').first.click()
        page.locator("#message textarea").press("Enter")
        _answered(page, 1)
        expect(page.locator('[data-testid="user"]')).to_have_count(1)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_a_text_file_named_as_a_photo_says_so_in_the_box_and_is_refused(page_app, tmp_path):
    from playwright.sync_api import expect

    fake = tmp_path / "notes.png"
    fake.write_text("shopping list: milk, eggs\n")
    with chromium() as page:
        _open(page, page_app)
        page.locator('#message input[type="file"]').set_input_files(str(fake))
        expect(page.locator("#message .mmchat-not-photo")).to_have_text("Not a photo: notes.png", timeout=15_000)
        expect(page.locator("#message img:visible")).to_have_count(0)  # no broken picture
        page.locator("#message textarea").fill("What is this?")
        page.locator("#message textarea").press("Enter")
        expect(page.locator(".toast-body").last).to_contain_text("notes.png", timeout=30_000)
        expect(page.locator("#message textarea")).to_have_value("What is this?")  # kept, to send without it
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_a_menu_s_list_closes_when_tab_moves_past_it_and_a_click_still_chooses(page_app):
    from playwright.sync_api import expect

    open_lists = ("() => [...document.querySelectorAll('[role=listbox], .options')]"
                  ".filter(list => list.getBoundingClientRect().height > 0).length")
    with chromium() as page:
        _open(page, page_app)
        page.locator("#describe-button").focus()
        page.keyboard.press("Tab")  # into Task: its list opens
        page.keyboard.press("Tab")  # into Detail: Task's closes, Detail's opens
        page.keyboard.press("Tab")  # out: none is left open over the page
        page.wait_for_timeout(300)
        assert page.evaluate(open_lists) == 0
        page.locator("#describe-verbosity input").click()
        page.locator("#describe-verbosity li", has_text="Detailed").first.click()
        expect(page.locator("#describe-verbosity input")).to_have_value("Detailed")
        assert not page.errors, f"console errors: {page.errors}"


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox")
@needs_chromium
def test_holding_alt_shift_r_records_a_question_and_letting_go_sends_it(config, qwen_engine, speech_to_text,
                                                                        text_to_speech, photos, tmp_path):
    from playwright.sync_api import expect

    said = tmp_path / "said.wav"  # Chromium's fake microphone plays this, round and round
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(tmp_path / "raw.wav"),
                    "What colour is the shape?"], check=True)
    subprocess.run(["sox", str(tmp_path / "raw.wav"), "-r", "48000", "-c", "1", str(said), "pad", "0.5", "1.5"],
                   check=True)
    services = voice_services_for(with_config(config, max_new_tokens=8), qwen_engine, speech_to_text, text_to_speech)
    url, demo = _serve(services)
    try:
        with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={said}") as page:
            _open(page, url)
            # A photo in the box first: the spoken question goes with it.
            page.locator('#message input[type="file"]').set_input_files(str(photos[0]))
            expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
            page.locator("#message textarea").focus()
            page.keyboard.down("Alt")
            page.keyboard.down("Shift")
            page.keyboard.down("KeyR")
            expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "true", timeout=10_000)
            page.wait_for_timeout(3000)  # about one pass of the question
            page.keyboard.up("KeyR")
            page.keyboard.up("Shift")
            page.keyboard.up("Alt")
            question = page.locator('[data-testid="user"]')
            expect(question.last).to_contain_text("shape", timeout=60_000)  # its transcript
            expect(page.locator('[data-testid="user"] img')).to_have_count(1)  # with the photo
            expect(page.locator('[data-testid="user"] audio')).to_have_count(1)  # and the recording, as audio
            names = page.locator('#conversation [data-testid="user"]').evaluate_all(
                "messages => messages.map(m => m.getAttribute('aria-label'))")
            assert names[:2] == ["You: photo", "You: recording"], names
            _answered(page, 1)
            expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "false")
            assert not page.errors, f"console errors: {page.errors}"
    finally:
        demo.close()


@needs_chromium
def test_the_first_tab_stop_skips_the_sidebar_to_the_message_box(page_app):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        # From the top of the page, as after a reload with the focus nowhere in particular.
        page.evaluate("() => { const top = document.createElement('span'); top.tabIndex = -1;"
                      " document.body.prepend(top); top.focus(); }")
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to the message box")
        expect(skip).to_be_focused()
        expect(skip).to_be_visible()  # seen when reached, hidden otherwise
        page.keyboard.press("Enter")
        expect(page.locator("#message textarea")).to_be_focused()
        expect(skip).not_to_be_in_viewport()
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_photos_of_one_message_are_thumbnails_side_by_side_that_open_full_size(page_app, photos):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, page_app)
        page.locator('#message input[type="file"]').set_input_files([str(p) for p in photos])
        expect(page.locator("#message img")).to_have_count(2, timeout=15_000)
        _ask(page, "How do these differ?")
        _answered(page, 1)
        shown = page.locator('[data-testid="user"] img')
        expect(shown).to_have_count(2)
        boxes = [each.bounding_box() for each in shown.all()]
        assert max(b["y"] for b in boxes) < min(b["y"] + b["height"] for b in boxes), boxes  # one row ...
        assert [box["x"] for box in boxes] == sorted(box["x"] for box in boxes), boxes  # ... side by side
        assert all(box["width"] <= 240 and box["height"] <= 160 for box in boxes), boxes  # thumbnails
        words = page.locator('[data-testid="user"]', has_text="How do these differ?").bounding_box()
        assert words["y"] >= boxes[0]["y"] + boxes[0]["height"]  # the words under them
        shown.first.click()
        page.wait_for_function("() => document.fullscreenElement !== null", timeout=10_000)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_regenerate_keeps_the_earlier_answer_and_the_switcher_brings_it_back(config, qwen_engine):
    """As in ChatGPT: Regenerate writes another answer beside the first, "‹ Answer 1 of 2" goes
    back to it, and the one chosen is the one kept (and given to the model) after a reload."""
    from playwright.sync_api import expect

    # Sampled, so the random model's two answers differ.
    url, demo = _serve(make_services(with_config(config, max_new_tokens=24, temperature=1.0), qwen_engine))
    try:
        with chromium() as page:
            _open(page, url)
            _ask(page, "Tell me something")
            _answered(page, 1)
            answer = page.locator('[data-testid="bot"]').last
            first = answer.inner_text()
            page.locator("#conversation").get_by_role("button", name="Retry").click()
            expect(answer).not_to_have_text(first, timeout=60_000)
            _answered(page, 1)
            second = answer.inner_text()
            back = page.get_by_role("button", name="‹ Answer 1 of 2")
            expect(back).to_be_visible(timeout=15_000)
            back.click()
            expect(answer).to_have_text(first, timeout=15_000)
            expect(page.locator("#mmchat-live")).to_have_text("Showing answer 1 of 2.", timeout=15_000)
            forward = page.get_by_role("button", name="Answer 2 of 2 ›")
            expect(forward).to_be_visible()
            expect(page.get_by_role("button", name="‹ Answer 1 of 2")).to_have_count(0)
            page.reload(wait_until="load")
            expect(answer).to_have_text(first, timeout=30_000)  # the one chosen is the one kept
            forward.click()
            expect(answer).to_have_text(second, timeout=15_000)
            assert not page.errors, f"console errors: {page.errors}"
    finally:
        demo.close()


@needs_chromium
def test_a_clip_in_the_box_is_asked_about_and_plays_in_the_chat(page_app, tmp_path):
    from playwright.sync_api import expect

    from clips import make_clip

    clip = make_clip(tmp_path / "moving.webm", seconds=2.0, fps=10, codec="libvpx-vp9")
    with chromium() as page:
        _open(page, page_app)
        page.locator('#message input[type="file"]').set_input_files(str(clip))
        expect(page.locator("#message .mmchat-not-photo")).to_have_count(0)
        _ask(page, "Which way does it move?")
        _answered(page, 1)
        question = page.locator('[data-testid="user"]').first
        video = question.locator("video")
        expect(video).to_have_count(1, timeout=15_000)
        # The browser can play it: its length is known (2 s), from the file the store keeps.
        duration = video.evaluate("v => new Promise(done => v.readyState >= 1 ? done(v.duration) :"
                                  " v.addEventListener('loadedmetadata', () => done(v.duration)))")
        assert abs(duration - 2.0) < 0.3, duration
        expect(page.locator(".toast-body")).to_have_count(0)
        assert not page.errors, f"console errors: {page.errors}"
