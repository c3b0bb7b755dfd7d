"""Accessibility checks on a live Playwright page: axe-core's rules, and Chromium's own accessibility tree.

axe-core comes bundled in the `axe-playwright-python` package (no network at test time); it
runs inside the page, so it sees the page as rendered, styles and all. Two things it does not
judge are checked here from Chromium's accessibility tree instead (the tree a screen reader
is given): whether every control a user can operate has a role and a name.
"""

from __future__ import annotations

from dataclasses import dataclass

# WCAG 2.0-2.2 A and AA, the level the issue asks for; best-practice rules (region, heading
# order ...) are left out so a count means "fails the standard", not "could be nicer".
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("serious", "critical")

# Roles a user operates; each needs a name, or a screen reader says only "button".
CONTROL_ROLES = {
    "button", "checkbox", "combobox", "link", "listbox", "menuitem", "menuitemcheckbox", "menuitemradio",
    "option", "radio", "scrollbar", "searchbox", "slider", "spinbutton", "switch", "tab", "textbox",
    "treeitem", "PopUpButton", "ToggleButton",
}
# Roles that say nothing about what an element does: a focusable one is a control without a role.
NO_ROLE = {"generic", "none", "presentation", "StaticText", "InlineTextBox", "LineBreak", "div", "paragraph",
           "Section", "group"}


@dataclass(frozen=True)
class Violation:
    """One axe rule failed: `nodes` are the failing elements' CSS selectors, with why each fails."""

    rule: str
    impact: str
    help: str
    nodes: tuple[tuple[str, str, str], ...]  # (selector, outer HTML start, axe's failure summary)

    @property
    def blocking(self) -> bool:
        return self.impact in BLOCKING

    def describe(self) -> str:
        lines = [f"{self.rule} ({self.impact}, {len(self.nodes)} nodes): {self.help}"]
        lines += [f"  {selector}  {html}\n    {summary}" for selector, html, summary in self.nodes]
        return "\n".join(lines)


def axe_violations(page, context: str | None = None, tags: list[str] | None = None) -> list[Violation]:
    """Run axe-core on `page` (or on the elements `context` selects) and return what fails."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"resultTypes": ["violations"], "runOnly": {"type": "tag", "values": tags or WCAG_AA}}
    results = Axe().run(page, context=context, options=options).response
    return [
        Violation(
            rule=rule["id"], impact=rule.get("impact") or "minor", help=rule["help"],
            nodes=tuple((" ".join(map(str, node["target"])), node["html"][:160],
                         node.get("failureSummary", "").replace("\n", " ")) for node in rule["nodes"]),
        )
        for rule in results["violations"]
    ]


def blocking_violations(page, context: str | None = None) -> list[Violation]:
    """The serious and critical ones: what the issue asks to be zero."""
    return [v for v in axe_violations(page, context) if v.blocking]


@dataclass(frozen=True)
class Control:
    """A node of Chromium's accessibility tree that a user can operate."""

    role: str
    name: str
    html: str  # the element's outer HTML start, to find it in the page

    def __str__(self) -> str:
        return f"{self.role or '(no role)'} {self.name!r}: {self.html}"


def controls(page) -> list[Control]:
    """Every control a user can reach: nodes with a control role, and focusable nodes without one."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Accessibility.enable")
        cdp.send("DOM.getDocument", {"depth": -1})  # DOM node ids exist only once the document was asked for
        found = []
        for node in cdp.send("Accessibility.getFullAXTree")["nodes"]:
            if node.get("ignored"):
                continue
            role = node.get("role", {}).get("value", "")
            properties = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}
            focusable = properties.get("focusable") is True and role not in ("RootWebArea", "WebArea", "Iframe")
            if role not in CONTROL_ROLES and not (focusable and role in NO_ROLE):
                continue
            if properties.get("hidden") is True:
                continue
            found.append(Control(role if role not in NO_ROLE else "", (node.get("name") or {}).get("value", "").strip(),
                                 _outer_html(cdp, node.get("backendDOMNodeId"))))
        return found
    finally:
        cdp.detach()


def unnamed_controls(page) -> list[Control]:
    """Controls that lack a role or a name: a screen reader cannot say what they are or do."""
    return [c for c in controls(page) if not c.role or not c.name]


def _outer_html(cdp, backend_node_id: int | None) -> str:
    if backend_node_id is None:
        return "(no DOM node)"
    try:
        html = cdp.send("DOM.getOuterHTML", {"backendNodeId": backend_node_id})["outerHTML"]
    except Exception:  # the node went away meanwhile (Gradio re-renders)
        return "(gone)"
    return " ".join(html.split())[:200]


def choose_in_menu(page, words: str) -> None:
    """Pick, by keys alone, the entry starting with `words` in the menu (a Gradio Dropdown)
    that has the focus: select what it shows, type, let the menu filter, Enter."""
    page.keyboard.press("Control+A")
    page.keyboard.type(words)
    page.wait_for_timeout(300)  # the menu filters as it is typed
    page.keyboard.press("Enter")
