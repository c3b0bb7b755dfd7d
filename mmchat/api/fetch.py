"""Fetching an image URL, for hosts the operator allows (--allow-image-urls) and no others.

A server that fetches what a client names can be made to reach what only it can
reach (a router's admin page, a cloud metadata address, a service on loopback). So a
host must be on the allow-list, every address it resolves to must be public, the
connection goes to the address that was checked (a second DNS answer can't swap in a
private one), redirects are not followed, and size and time are bounded.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx

from .errors import ApiError

FETCH_SECONDS = 10.0


def allowed_hosts(setting: str) -> tuple[str, ...]:
    return tuple(host.strip().lower().rstrip(".") for host in setting.split(",") if host.strip())


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry == "*" or entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror:
        raise ApiError(400, f"The image URL's host {host!r} could not be found.", code="image_url_failed") from None


def fetch_image(url: str, allowed: tuple[str, ...], max_bytes: int, param: str) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, "An image URL must be an http(s) address or a data: URL.", param=param)
    if not host_allowed(host, allowed):
        raise ApiError(400, f"This server does not fetch images from {host!r} (not among the hosts it allows); "
                            "send the image inline as a data URL: data:image/jpeg;base64,...",
                       param=param, code="image_url_not_allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses or not all(public_address(a) for a in addresses):
        raise ApiError(400, f"This server does not fetch images from {host!r}: it is on a private, loopback or "
                            "link-local network.", param=param, code="image_url_not_allowed")
    return _download(parts, host, addresses[0], port, max_bytes, param)


def _download(parts, host: str, address: str, port: int, max_bytes: int, param: str) -> bytes:
    literal = f"[{address}]" if ":" in address else address
    target = parts._replace(netloc=f"{literal}:{port}").geturl()
    deadline = time.monotonic() + FETCH_SECONDS
    failed = f"The image at {parts.geturl()[:200]} could not be fetched"
    try:
        with httpx.Client(timeout=FETCH_SECONDS, follow_redirects=False, trust_env=False) as client:
            # The checked address is dialled; the name still goes out as Host and for TLS.
            with client.stream("GET", target, headers={"host": parts.netloc.rsplit("@", 1)[-1]},
                               extensions={"sni_hostname": host}) as response:
                if response.is_redirect:
                    raise ApiError(400, f"{failed}: it redirects elsewhere (redirects are not followed).",
                                   param=param, code="image_url_failed")
                if response.status_code != 200:
                    raise ApiError(400, f"{failed}: the server answered {response.status_code}.",
                                   param=param, code="image_url_failed")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_big(max_bytes, param)
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise _too_big(max_bytes, param)
                    if time.monotonic() > deadline:
                        raise ApiError(400, f"{failed} within {FETCH_SECONDS:.0f} s.", param=param,
                                       code="image_url_failed")
                return bytes(data)
    except httpx.HTTPError as exc:
        raise ApiError(400, f"{failed} ({type(exc).__name__}).", param=param, code="image_url_failed") from None


def _too_big(max_bytes: int, param: str) -> ApiError:
    # 413, as for an inline photo over the limit (mmchat/api/messages.py).
    return ApiError(413, f"The image at that URL is larger than {max_bytes / 1e6:.0f} MB, the limit.",
                    param=param, code="invalid_image")
