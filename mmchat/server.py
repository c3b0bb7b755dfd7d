"""One process, one port: the OpenAI-compatible API under /v1 and the page at /.

    app = build_app(services, build_ui(services))   # a FastAPI app (tests serve it themselves)
    serve(build_ui(services), services)             # uvicorn on config.host:config.port

Both share one `Services`, so the page and the API answer through the same admission
line and the same limits.
"""

from __future__ import annotations

import inspect
import logging

import uvicorn
from fastapi import FastAPI

from .api import api_router
from .api.auth import load_keys, warn_if_open
from .api.errors import install_error_handlers
from .errors import UserFacingError
from .turn import Services

log = logging.getLogger(__name__)


def build_app(services: Services, demo=None) -> FastAPI:
    """The API routes, and the page (a gr.Blocks) mounted at / with the options it launches with."""
    app = FastAPI(title="mmchat", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(api_router(services))  # before the page's mount, which takes every other path
    if demo is not None and getattr(demo, "mmchat_voice", None) is not None:
        from .voice.websocket import voice_router

        app.include_router(voice_router(demo.mmchat_voice))  # voice mode's microphone and camera
    if demo is not None:
        import gradio as gr

        from .ui import launch_options

        demo.queue()  # answers set their own limits (none: the turn layer's admission line bounds them)
        options = launch_options(services.config)
        # Every launch option the mount knows carries over as is, so one added in ui.py
        # works here too; the others belong to Gradio's own server, which is not used.
        accepted = inspect.signature(gr.mount_gradio_app).parameters
        unused = sorted(name for name, value in options.items() if name not in accepted and value)
        if unused:
            log.warning("Not available when the page is served with the API: %s", ", ".join(unused))
        gr.mount_gradio_app(app, demo, path="/", **{k: v for k, v in options.items() if k in accepted})
    return app


def serve(demo, services: Services) -> None:
    try:
        _serve(demo, services)
    finally:
        # After the server has stopped: closing the last connection checkpoints the
        # write-ahead log into the database, so a clean stop leaves one file behind.
        if services.store is not None:
            services.store.close()


def _serve(demo, services: Services) -> None:
    config = services.config
    if config.share:  # a share link needs Gradio's own server, which cannot carry the API routes
        from .ui import launch_options

        log.warning("--share: serving the page through a Gradio share link, without the HTTP API (/v1) "
                    "and without voice mode (its socket is served with the API)")
        demo.queue()
        demo.launch(**launch_options(config))
        return
    try:
        warn_if_open(config, load_keys(config))
        app = build_app(services, demo)
    except UserFacingError as exc:  # e.g. an unreadable keys file: say so, no traceback
        raise SystemExit(exc.message) from None
    log.info("Serving the page at http://%s:%d/ and the OpenAI-compatible API at http://%s:%d/v1",
             config.host, config.port, config.host, config.port)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
