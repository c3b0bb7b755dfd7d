"""API keys: none needed unless the operator sets some (--api-key, --api-keys-file).

On loopback only programs on this machine can reach the API, so no key is the default;
serving beyond it without one is allowed (a trusted LAN) but warned about at start-up.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from pathlib import Path

from fastapi import Request

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
    if not keys and not is_loopback(config.host):
        log.warning("The HTTP API (/v1) is served on %s without an API key: anyone who can reach this address "
                    "can use the model. Set --api-key KEY (or --api-keys-file FILE), or serve on 127.0.0.1.",
                    config.host)


class KeyCheck:
    """A FastAPI dependency: the request's `Authorization: Bearer KEY` must be one of `keys`."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __call__(self, request: Request) -> None:
        if not self._keys:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "This server needs an API key: send it as 'Authorization: Bearer KEY'.",
                           code="invalid_api_key")
        given_bytes = given.strip().encode()
        # Every key is compared, in constant time, so timing tells nothing about any of them.
        if not any([hmac.compare_digest(given_bytes, key) for key in self._keys]):
            raise ApiError(401, "The API key is not valid for this server.", code="invalid_api_key")
