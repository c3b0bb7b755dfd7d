"""The interface in Chinese, in a real browser: chosen by the browser's language, or in
Settings by keyboard (and kept after a reload); every control named in it, no serious
accessibility failure, and the server's messages in it too."""

from __future__ import annotations

import pytest

from mmchat.i18n import CHINESE, TABLES

from accessibility import blocking_violations, choose_in_menu, controls, unnamed_controls
from test_accessibility import shape_photo
from test_browser import chromium, needs_chromium

pytestmark = pytest.mark.browser

# Words of the page that must be in Chinese in a Chinese interface (each the name of a control).
CHINESE_NAMES = ["消息", "描述 (Alt+Shift+D)", "设置", "新对话", "搜索对话", "任务", "详细程度", "语言"]


@pytest.fixture
def chinese_page():
    """A Chromium whose language is Chinese, as a Chinese user's browser is."""
    with chromium("--lang=zh-CN") as page:
        page.context.set_extra_http_headers({"Accept-Language": "zh-CN,zh;q=0.9"})
        page.add_init_script("Object.defineProperty(navigator, 'language', {get: () => 'zh-CN'});"
                             "Object.defineProperty(navigator, 'languages', {get: () => ['zh-CN', 'zh']});")
        yield page


def open_page(page, url: str) -> None:
    """Open the page and wait for the model (its status line is in the page's language)."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="load", timeout=60_000)
    expect(page.locator("#model-status")).to_contain_text("shapes-vlm", timeout=60_000)


def _names(page) -> set[str]:
    return {control.name for control in controls(page)}


@needs_chromium
def test_a_chinese_browser_gets_the_chinese_interface_every_control_named(shapes_app, chinese_page, tmp_path):
    from playwright.sync_api import expect

    page = chinese_page
    open_page(page, shapes_app)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    expect(page.locator("#model-status")).to_have_text("模型：shapes-vlm · 已就绪")  # from the server, in Chinese
    page.get_by_role("button", name="设置").click()  # open Settings, so its controls are in the tree too
    expect(page.get_by_role("combobox", name="语言")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("combobox", name="详细程度")).to_be_visible()
    names = _names(page)
    # (An accordion's name ends with its arrow: "设置 ▼".)
    assert [n for n in CHINESE_NAMES if not any(name.startswith(n) for name in names)] == [], sorted(names)
    assert not unnamed_controls(page)
    failures = blocking_violations(page)
    assert not failures, "\n".join(v.describe() for v in failures)
    # The server's messages too: Describe with nothing to describe.
    page.keyboard.press("Alt+Shift+D")
    expect(page.locator("#mmchat-live")).to_contain_text("还没有可描述的内容", timeout=30_000)


@needs_chromium
def test_the_language_is_switched_in_settings_by_keyboard_and_kept(shapes_app, tmp_path):
    from playwright.sync_api import expect

    with chromium() as page:
        open_page(page, shapes_app)
        settings = page.get_by_role("button", name="Settings")
        settings.focus()
        page.keyboard.press("Enter")
        page.locator("#language input").focus()
        choose_in_menu(page, "中文")
        expect(page.get_by_role("button", name="描述 (Alt+Shift+D)")).to_be_visible(timeout=15_000)
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        # A question's answer marker and an announcement come from the server, in Chinese.
        page.locator("#message input[type=file]").set_input_files(str(shape_photo(tmp_path, "red")))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        page.locator("#describe-task input").focus()
        choose_in_menu(page, "识别")
        expect(page.locator("#describe-task input")).to_have_value("识别物体和颜色")
        page.keyboard.press("Alt+Shift+D")
        expect(page.locator('[data-testid="user"]').last).to_contain_text("识别物体和颜色 (简短)", timeout=30_000)
        expect(page.locator('[data-testid="bot"]').last).to_have_text("red", timeout=30_000)
        # The sidebar lists the new conversation once the answer is done: the page is idle again
        # (a reload while that refresh runs aborts it, which the browser logs as an error).
        expect(page.locator("#conversation-list button.conversation")).to_have_count(1, timeout=15_000)
        page.reload(wait_until="load")
        expect(page.get_by_role("button", name="描述 (Alt+Shift+D)")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="设置").click()
        expect(page.locator("#language input")).to_have_value("中文", timeout=15_000)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_after_switching_to_chinese_what_the_server_and_gradio_say_is_chinese_too(shapes_app, tmp_path):
    """The status line, the timings, a toast's title, the history's hint and the chat's message
    names follow the new language; no raw key of a word table is shown or announced."""
    from playwright.sync_api import expect

    with chromium() as page:
        open_page(page, shapes_app)
        page.locator("#message input[type=file]").set_input_files(str(shape_photo(tmp_path, "red")))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        page.locator("#message textarea").fill("What colour is the shape?")
        page.locator("#message textarea").press("Enter")
        expect(page.locator('[data-testid="bot"]').last).to_have_text("red", timeout=30_000)
        expect(page.locator("#conversation-list button.conversation")).to_have_count(1, timeout=15_000)

        page.get_by_role("button", name="Settings").click()
        page.locator("#language input").focus()
        choose_in_menu(page, "中文")
        expect(page.locator("#model-status")).to_have_text("模型：shapes-vlm · 已就绪", timeout=15_000)
        page.get_by_role("button", name="耗时").click()
        expect(page.locator("#timings")).to_contain_text("问题", timeout=15_000)
        expect(page.locator("#timings")).to_contain_text("回答完成")
        # The list is not empty: no "conversations appear here" hint over it, in any language.
        expect(page.locator("#history")).not_to_contain_text("提出第一个问题后")
        expect(page.locator("#history")).not_to_contain_text("Your conversations appear here")
        history = page.get_by_role("navigation", name="对话列表")  # the list's name and its day, in Chinese too
        expect(history.get_by_role("heading", name="今天")).to_be_visible(timeout=15_000)
        names = page.locator('#conversation [data-testid="user"], #conversation [data-testid="bot"]').evaluate_all(
            "messages => messages.map(m => m.getAttribute('aria-label'))")
        assert names == ["你: 照片", "你: What colour is the shape?", "mmchat: red"], names
        assert page.locator("#conversation").get_by_role("button", name="分享").count() == 0  # no Share here either
        # A refusal's toast: its words and its title in Chinese.
        page.locator("#message textarea").press("Enter")
        toast = page.locator(".toast-body").last
        expect(toast).to_contain_text(TABLES[CHINESE]["no_question"], timeout=15_000)
        expect(toast.locator(".toast-title")).to_have_text("警告")
        shown = page.evaluate("() => document.body.innerText + ' ' + [...document.querySelectorAll("
                              "'[aria-live], [role=status], [role=alert]')].map(e => e.textContent).join(' ')")
        assert "common." not in shown and "__i18n__" not in shown, shown[:2000]
        assert not page.errors, f"console errors: {page.errors}"
