"""API keys: none needed unless the operator sets some (--api-key, --api-keys-file), or
the server runs with --auth (then each user's keys, from `python -m mmchat.users add-key`).

On loopback only programs on this machine can reach the API, so no key is the default;
serving beyond it without one is allowed (a trusted LAN) but warned about at start-up.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..config import Config
from ..errors import UserFacingError
from .errors import ApiError

log = logging.getLogger(__name__)


def load_keys(config: Config) -> tuple[str, ...]:
    keys = [config.api_key.strip()] if config.api_key.strip() else []
    if config.api_keys_file:
        path = Path(config.api_keys_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserFacingError(f"The API keys file {path} can't be read ({exc.strerror or exc}). "
                                  "Fix: --api-keys-file with a readable file, one key a line.") from None
        keys += [line.split("#", 1)[0].strip() for line in lines]
    return tuple(key for key in keys if key)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only "localhost" is known to stay on this machine
        return False


def warn_if_open(config: Config, keys: tuple[str, ...]) -> None:
    if not keys and not config.auth and not is_loopback(config.host):  # with --auth users' keys are needed
        log.warning("The HTTP API (/v1) is served on %s without an API key: anyone who can reach this address "
                    "can use the model. Set --api-key KEY (or --api-keys-file FILE), or serve on 127.0.0.1.",
                    config.host)


ACCOUNTS_STATE = "mmchat_accounts"  # app.state's users (mmchat.users.Accounts) when served with --auth


class KeyCheck:
    """A FastAPI dependency: the request's `Authorization: Bearer KEY` must be one of `keys`,
    or, with --auth (the app's state holds the accounts), a user's key.

    With --auth a key is always needed. The request's `state.mmchat_user` is then the
    key's user, or None for the operator's keys (--api-key, --api-keys-file)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    async def __call__(self, request: Request) -> None:
        accounts = getattr(request.app.state, ACCOUNTS_STATE, None)
        request.state.mmchat_user = None
        if not self._keys and accounts is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "This server needs an API key: send it as 'Authorization: Bearer KEY'.",
                           code="invalid_api_key")
        given_bytes = given.strip().encode()
        # Every key is compared, in constant time, so timing tells nothing about any of them.
        if any([hmac.compare_digest(given_bytes, key) for key in self._keys]):
            return
        user = await run_in_threadpool(accounts.user_of_key, given.strip()) if accounts is not None else None
        if user is None:
            raise ApiError(401, "The API key is not valid for this server.", code="invalid_api_key")
        request.state.mmchat_user = user
