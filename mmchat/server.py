"""One process, one port: the OpenAI-compatible API under /v1 and the page at /.

    demo, voice = build_page(services)                # the page, and its sessions' voice mode
    app = build_app(services, demo, voice)            # a FastAPI app (tests serve it themselves)
    serve(demo, services, voice)                      # uvicorn on config.host:config.port

Both share one `Services`, so the page and the API answer through the same admission
line and the same limits. With --auth (mmchat/users) a log-in gate stands in front of
the page and its files, and the API takes users' keys.
"""

from __future__ import annotations

import inspect
import logging

import uvicorn
from fastapi import FastAPI

from .api import api_router
from .api.auth import ACCOUNTS_STATE, load_keys, warn_if_open
from .api.errors import install_error_handlers
from .errors import UserFacingError
from .turn import Services

log = logging.getLogger(__name__)


def build_page(services: Services):
    """The page and every session's voice mode, whose socket build_app serves beside it:
    (the gr.Blocks, the VoiceLoops). The page knows voice mode only by what it is handed."""
    from .voice.loop import VoiceLoop
    from .voice.websocket import VoiceLoops
    from .web.page import build_ui

    voice = VoiceLoops(lambda session: VoiceLoop(session, services))
    return build_ui(services, voice=voice), voice


def build_app(services: Services, demo=None, voice=None) -> FastAPI:
    """The API routes, the page (a gr.Blocks) mounted at / with the options it launches with,
    and voice mode's socket for `voice` (the VoiceLoops the page was built with)."""
    app = FastAPI(title="mmchat", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(api_router(services))  # before the page's mount, which takes every other path
    accounts = _accounts(services.config) if services.config.auth else None
    if accounts is not None:
        from .users.web import login_router, user_of_request

        setattr(app.state, ACCOUNTS_STATE, accounts)  # the API's key check takes users' keys from here
        app.include_router(login_router(accounts))
    if voice is not None:
        from .voice.websocket import voice_router

        app.include_router(voice_router(voice))  # voice mode's microphone and camera
    if demo is not None:
        import gradio as gr

        from .web.page import launch_options

        demo.queue()  # answers set their own limits (none: the turn layer's admission line bounds them)
        options = launch_options(services.config)
        if accounts is not None:
            _gate(app, services, accounts, demo)
            options["auth_dependency"] = user_of_request  # what Gradio gives handlers as gr.Request.username
        # Every launch option the mount knows carries over as is, so one added in web/page.py
        # works here too; the others belong to Gradio's own server, which is not used.
        accepted = inspect.signature(gr.mount_gradio_app).parameters
        unused = sorted(name for name, value in options.items() if name not in accepted and value)
        if unused:
            log.warning("Not available when the page is served with the API: %s", ", ".join(unused))
        gr.mount_gradio_app(app, demo, path="/", **{k: v for k, v in options.items() if k in accepted})
        _stop_answers_of_closed_tabs(app, demo)
    return app


def _stop_answers_of_closed_tabs(app: FastAPI, demo) -> None:
    """A tab closed mid-answer ends its answer within a token, not an hour later when
    Gradio deletes its session (see mmchat/closed_tab.py). The answer is kept, marked stopped."""
    from .web.closed_tab import TabWatch, stop_answers_of
    from .turn.session import ChatSession

    def on_gone(session_hash: str) -> None:
        stopped = stop_answers_of(demo, session_hash, lambda value: isinstance(value, ChatSession),
                                  lambda session: session.cancel_scope.cancel())
        if stopped:
            log.info("A page closed its connection: stopped the answer of its session")

    app.add_middleware(TabWatch, on_gone=on_gone)


def _accounts(config):
    from .users import Accounts, SessionLimits

    return Accounts(config.data_dir, SessionLimits(lifetime_seconds=config.session_hours * 3600,
                                                   idle_seconds=config.session_idle_hours * 3600))


def _gate(app: FastAPI, services: Services, accounts, demo) -> None:
    """With --auth: every page route behind a log-in, and each file to its owner only."""
    import gradio as gr
    from gradio.utils import get_upload_folder

    from .users.files import FileAccess
    from .users.web import LoginGate, file_paths

    store = services.open_store()
    # Served from where they are (not copied into Gradio's cache, which would hand
    # them to anyone logged in), each request checked by the gate: see users/files.py.
    gr.set_static_paths([store.media.root, store.root / "exports"])
    files = FileAccess(store, get_upload_folder(), page_files=lambda: file_paths(getattr(demo, "config", None)))
    app.add_middleware(LoginGate, accounts=accounts, files=files)


def close_accounts(app: FastAPI) -> None:
    accounts = getattr(app.state, ACCOUNTS_STATE, None)
    if accounts is not None:
        accounts.close()


def check_options(config) -> None:
    """Refuse, before anything is loaded, options that can't be served together."""
    if config.auth and config.share:
        raise SystemExit("--auth can't be used with --share: a share link goes through Gradio's own server, "
                         "which has no log-in of mmchat's. Serve with --auth and --host 0.0.0.0 instead, "
                         "or share without --auth.")


def serve(demo, services: Services, voice=None) -> None:
    try:
        _serve(demo, services, voice)
    finally:
        # After the server has stopped: closing the last connection checkpoints the
        # write-ahead log into the database, so a clean stop leaves one file behind.
        if services.store is not None:
            services.store.close()


def _serve(demo, services: Services, voice) -> None:
    config = services.config
    check_options(config)
    if config.share:  # a share link needs Gradio's own server, which cannot carry the API routes
        from .web.page import launch_options

        log.warning("--share: serving the page through a Gradio share link, without the HTTP API (/v1) "
                    "and without voice mode (its socket is served with the API)")
        demo.queue()
        demo.launch(**launch_options(config))
        return
    try:
        warn_if_open(config, load_keys(config))
        app = build_app(services, demo, voice)
    except UserFacingError as exc:  # e.g. an unreadable keys file: say so, no traceback
        raise SystemExit(exc.message) from None
    if config.auth:
        _explain_accounts(app, services)
    log.info("Serving the page at http://%s:%d/ and the OpenAI-compatible API at http://%s:%d/v1",
             config.host, config.port, config.host, config.port)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    finally:
        close_accounts(app)


def _explain_accounts(app: FastAPI, services: Services) -> None:
    from .store import LOCAL_OWNER
    from .users.accounts import local_exports

    config = services.config
    accounts = getattr(app.state, ACCOUNTS_STATE)
    count = accounts.user_count()
    if count == 0:
        log.warning("--auth is on and there are no users yet, so no one can log in. Add one (the server "
                    "can keep running) with: python -m mmchat.users --data-dir %s add NAME", config.data_dir)
    else:
        log.info("--auth: %d user%s may log in; the HTTP API needs a user's key (python -m mmchat.users "
                 "add-key NAME)", count, "" if count == 1 else "s")
    # Conversations made before --auth was turned on belong to no user: no one sees them
    # until they are given to someone.
    store = services.open_store()
    earlier = store.conversation_count(LOCAL_OWNER)
    if earlier:
        one, exports = earlier == 1, len(local_exports(config.data_dir))
        them = "it" if one else "them"
        where = str(store.path) + (f", with {exports} export{'' if exports == 1 else 's'} in "
                                   f"{accounts.exports_folder(LOCAL_OWNER)}" if exports else "")
        log.warning("--auth: %d earlier conversation%s, made without --auth (in %s), belong%s to no user, so "
                    "no one sees %s now. To give %s to a user (add them first): python -m mmchat.users "
                    "--data-dir %s adopt NAME", earlier, "" if one else "s", where, "s" if one else "", them,
                    them, config.data_dir)
