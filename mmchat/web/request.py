"""What a page request says about the person: who they are and which language they read."""

from __future__ import annotations

import gradio as gr

from ..i18n import ENGLISH, language_of
from ..store import LOCAL_OWNER


def owner_of(request: gr.Request | None) -> str:
    """Whose conversations and preferences these are: the logged-in user (--auth), else the local person."""
    return (getattr(request, "username", None) if request is not None else None) or LOCAL_OWNER


def page_language(request: gr.Request | None, cookie: bool = True) -> str:
    """The page's language: the one chosen in Settings (a cookie the page script sets), else the browser's."""
    if request is None:
        return ENGLISH
    chosen = (request.cookies.get("mmchat-language") if cookie and hasattr(request, "cookies") else None) or "auto"
    if chosen != "auto":
        return language_of(chosen)
    headers = getattr(request, "headers", None) or {}  # none on a request made in code
    return language_of((headers.get("accept-language") or "").split(",")[0].strip())
