"""The OpenAI-compatible HTTP API (/v1), served with the page on one port by mmchat.server.

    routes.py    the endpoints, thin layers over the turn and the speech adapters
    schemas.py   what requests may hold
    messages.py  chat messages -> a turn's input (photos, the page's limits)
    fetch.py     image URLs from allowed hosts (--allow-image-urls)
    chat.py      one completion as a turn, stop sequences, usage
    replies.py   completion objects and stream chunks
    bridge.py    a blocking turn on its own thread, awaited from the event loop
    sse.py       server-sent events, and noticing a client that went away
    audio.py     transcription formats, speech encoding
    auth.py      API keys
    errors.py    OpenAI's error JSON
"""

from .routes import api_router, served_model_name

__all__ = ["api_router", "served_model_name"]
