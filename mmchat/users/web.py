"""The log-in page, log-out, and the gate in front of the page with --auth.

    app.include_router(login_router(accounts))   # /login, /logout
    app.add_middleware(LoginGate, accounts=..., files=FileAccess(...))

The gate lets through only requests with a live session cookie, except the log-in page
and the HTTP API (/v1, which checks API keys itself). It tells the page who is asking
(`request.state.mmchat_user`, which Gradio passes on as `gr.Request.username` through
`user_of_request`), refuses files that are someone else's (see files.py), notes whose
each upload is, and refuses an event that names a file the user may not fetch, so no one
can ask the model about another person's photo by its path.

A pure ASGI middleware, not Starlette's BaseHTTPMiddleware: it must pass the page's
streamed answers and the voice socket through untouched.
"""

from __future__ import annotations

import html
import json
import logging
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .accounts import Accounts
from .files import FileAccess

log = logging.getLogger(__name__)

COOKIE = "mmchat_session"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# The browser asks for these on the log-in page too, and for the manifest without cookies;
# they say only the app's name and show its icon.
STYLESHEET_PATH = "/login.css"
STYLESHEET = Path(__file__).with_name("login.css")
LOGIN_SCRIPT_PATH = "/login.js"  # a new log-in starts on a new chat (login.js says how)
LOGIN_SCRIPT = Path(__file__).with_name("login.js")
_OPEN_PATHS = (LOGIN_PATH, LOGOUT_PATH, STYLESHEET_PATH, LOGIN_SCRIPT_PATH, "/manifest.json", "/favicon.ico")
_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
_UPLOAD_ROUTE = "/gradio_api/upload"
_EVENTS_ROUTE = "/gradio_api/queue/data"  # the page's answers, as server-sent events
_CALL_RESULTS = "/gradio_api/call/"  # the same for Gradio's REST calls (GET /call/NAME/EVENT_ID)
# An event's body names its files by path (they were uploaded before); it is small,
# and bigger than this is no event of this page.
_EVENT_BODY_LIMIT = 16 * 2**20


def user_of_request(request: Request) -> str | None:
    """For gr.mount_gradio_app's auth_dependency: the user the gate let in."""
    return request.scope.get("state", {}).get("mmchat_user")


# --- the log-in page ---

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – mmchat</title>
<link rel="stylesheet" href="{stylesheet}">
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def _login_page(next_path: str, name: str = "", error: str = "") -> str:
    described = ' aria-describedby="login-error" aria-invalid="true"' if error else ""
    message = f'<p id="login-error" class="error" role="alert">{html.escape(error)}</p>\n' if error else ""
    body = f"""{message}<form method="post" action="{LOGIN_PATH}">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="name">User name</label>
<input id="name" name="name" autocomplete="username" autocapitalize="none" spellcheck="false" required
       value="{html.escape(name)}"{described}{"" if name else " autofocus"}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{described}
       {"autofocus" if name else ""}>
<button type="submit">Log in</button>
</form>
<script src="{LOGIN_SCRIPT_PATH}"></script>"""
    return _PAGE.format(title="Log in to mmchat", body=body, stylesheet=STYLESHEET_PATH)


def _logout_page() -> str:
    body = f"""<p>Log out of mmchat on this browser?</p>
<form method="post" action="{LOGOUT_PATH}"><button type="submit" autofocus>Log out</button></form>"""
    return _PAGE.format(title="Log out of mmchat", body=body, stylesheet=STYLESHEET_PATH)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this server only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def login_router(accounts: Accounts) -> APIRouter:
    router = APIRouter()
    lifetime = int(accounts.limits.lifetime_seconds)

    @router.get(LOGIN_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request, next: str = "/"):
        return HTMLResponse(_login_page(safe_next(next)), headers=_NO_STORE)

    @router.post(LOGIN_PATH, include_in_schema=False)
    async def log_in(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip().lower()
        password = (form.get("password") or [""])[0]
        next_path = safe_next((form.get("next") or ["/"])[0])
        token = await anyio.to_thread.run_sync(accounts.log_in, name, password) if name and password else None
        if token is None:
            log.info("Failed log-in as %r from %s", name, request.client.host if request.client else "?")
            page = _login_page(next_path, name, "The user name or password is not right. Check both and try again.")
            return HTMLResponse(page, status_code=401, headers=_NO_STORE)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(COOKIE, token, max_age=lifetime, path="/", httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        return response

    @router.get(STYLESHEET_PATH, include_in_schema=False)
    async def stylesheet():
        return Response(STYLESHEET.read_text(encoding="utf-8"), media_type="text/css")

    @router.get(LOGIN_SCRIPT_PATH, include_in_schema=False)
    async def login_script():
        return Response(LOGIN_SCRIPT.read_text(encoding="utf-8"), media_type="text/javascript")

    @router.get(LOGOUT_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def logout_form():
        # Logging out changes state, so a plain link (which any site could make) only asks.
        return HTMLResponse(_logout_page(), headers=_NO_STORE)

    @router.post(LOGOUT_PATH, include_in_schema=False)
    async def log_out(request: Request):
        await anyio.to_thread.run_sync(accounts.log_out, request.cookies.get(COOKIE))
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                               secure=request.url.scheme == "https")
        return response

    return router


_NO_STORE = {"Cache-Control": "no-store"}


# --- the gate ---

class LoginGate:
    def __init__(self, app, accounts: Accounts, files: FileAccess) -> None:
        self.app = app
        self.accounts = accounts
        self.files = files

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in _OPEN_PATHS or path == "/v1" or path.startswith("/v1/"):
            return await self.app(scope, receive, send)
        user = await anyio.to_thread.run_sync(self.accounts.user_of_session, _cookie(scope))
        if user is None:
            return await _refuse_stranger(scope, receive, send)
        scope.setdefault("state", {})["mmchat_user"] = user
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        route = next((r for r in _FILE_ROUTES if path.startswith(r)), None)
        if route is not None:
            asked = path[len(route):]
            if self.files.judges(asked) and not await anyio.to_thread.run_sync(self.files.may_fetch, user, asked):
                return await _not_found(send)
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and path == _UPLOAD_ROUTE:
            return await self.app(scope, receive, self._noting_uploads(user, send))
        if scope["method"] == "GET" and (path == _EVENTS_ROUTE or path.startswith(_CALL_RESULTS)):
            return await self.app(scope, receive, self._noting_outputs(user, send))
        if scope["method"] == "POST" and path.startswith("/gradio_api/") and _is_json(scope):
            return await self._checked_event(user, scope, receive, send)
        return await self.app(scope, receive, send)

    def _noting_uploads(self, user: str, send):
        """Pass the upload's answer on once the paths in it are noted as `user`'s: the page
        asks for a preview as soon as it has the answer."""
        held: list[dict] = []
        status = [0]

        async def noting(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                held.append(message)
                return
            if message["type"] != "http.response.body":
                return await send(message)
            held.append(message)
            if message.get("more_body"):
                return
            if status[0] == 200:
                try:
                    paths = json.loads(b"".join(m.get("body", b"") for m in held[1:]))
                except ValueError:
                    paths = []
                for uploaded in paths if isinstance(paths, list) else []:
                    if isinstance(uploaded, str):
                        self.files.grant_upload(user, uploaded)
            for waiting in held:
                await send(waiting)
            held.clear()

        return noting

    def _noting_outputs(self, user: str, send):
        """Note as `user`'s the files Gradio made for their answers (in its upload folder,
        which is also its cache) before the message naming them reaches the page."""
        pending = [b""]

        async def noting(message) -> None:
            if message["type"] == "http.response.body":
                pending[0] += message.get("body", b"")
                *complete, pending[0] = pending[0].split(b"\n\n")
                for event in complete:
                    for line in event.splitlines():
                        if line.startswith(b"data:") and b'"path"' in line:
                            try:
                                data = json.loads(line[5:])
                            except ValueError:
                                continue
                            for made in file_paths(data):
                                if self.files.is_upload(made):
                                    self.files.grant_upload(user, made)
            await send(message)

        return noting

    async def _checked_event(self, user: str, scope, receive, send) -> None:
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _EVENT_BODY_LIMIT:
                return await _plain(send, 413, "This request is too large for the page.")
            body.append(chunk)
            more = message.get("more_body", False)
        whole = b"".join(body)
        try:
            named = list(file_paths(json.loads(whole)))
        except ValueError:
            named = []
        for asked in named:
            if self.files.judges(asked) and not await anyio.to_thread.run_sync(self.files.may_fetch, user, asked):
                log.warning("Refused an event of %s naming a file that is not theirs: %s", user, asked)
                return await _plain(send, 403, "This request names a file that is not yours. Upload it again.")
        replayed = [False]

        async def replay():
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def file_paths(value):
    """Every file path in an event's data: Gradio sends files as {"path": ..., "meta": {"_type": "gradio.FileData"}}."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for inner in value.values():
            yield from file_paths(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from file_paths(inner)


def _cookie(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is no session
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def _header(scope, wanted: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == wanted), "")


def _is_json(scope) -> bool:
    return _header(scope, b"content-type").split(";")[0].strip().lower() == "application/json"


async def _refuse_stranger(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": "Log in first."})
        return
    wants_page = scope["method"] in ("GET", "HEAD") and (
        scope["path"] == "/" or "text/html" in _header(scope, b"accept"))
    if wants_page:
        target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        response = RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(target), safe='')}", status_code=303)
    else:
        response = Response(json.dumps({"detail": "Log in first: open the page in a browser and log in."}),
                            status_code=401, media_type="application/json")
    await response(scope, receive, send)


async def _not_found(send) -> None:
    # 404, not 403: whether someone else has such a file is not the asker's to learn.
    await _plain(send, 404, "There is no such file.")


async def _plain(send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": text.encode()})
