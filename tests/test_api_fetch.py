"""Image URLs: refused by default; with --allow-image-urls, fetched only from allowed
hosts on public addresses, without redirects, within the size limit."""

from __future__ import annotations

import http.server
import io
import threading

import openai
import pytest

from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.api import fetch
from mmchat.config import Config
from mmchat.engine.local import create_local_engine
from test_api import MODEL, answer, ask, shapes_config
from test_api_support import LiveServer, free_port


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))


def test_allow_list_entries_match_hosts_exactly_or_by_subdomain():
    allowed = fetch.allowed_hosts(" images.example.com, *.cdn.example.org ,")
    assert allowed == ("images.example.com", "*.cdn.example.org")
    assert fetch.host_allowed("images.example.com", allowed) and fetch.host_allowed("IMAGES.example.com.", allowed)
    assert fetch.host_allowed("eu.cdn.example.org", allowed)
    assert not fetch.host_allowed("cdn.example.org", allowed)  # the pattern is for its subdomains
    assert not fetch.host_allowed("badcdn.example.org", allowed) and not fetch.host_allowed("example.com", allowed)
    assert fetch.host_allowed("anything.net", ("*",))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.0.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "::ffff:127.0.0.1", "fe80::1", "fc00::1",
                                     "224.0.0.1"])
def test_private_loopback_and_link_local_addresses_are_not_public(address):
    assert not fetch.public_address(address)


def test_public_addresses_are(address="8.8.8.8"):
    assert fetch.public_address(address) and fetch.public_address("2001:4860:4860::8888")


class _Images(http.server.BaseHTTPRequestHandler):
    png = b""

    def do_GET(self):
        if self.path == "/star.png":
            self._send(200, self.png)
        elif self.path == "/moved.png":
            self.send_response(302)
            self.send_header("Location", "/star.png")
            self.end_headers()
        elif self.path == "/huge.png":
            self._send(200, b"\0" * 3_000_000)
        else:
            self._send(404, b"")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def images():
    buffer = io.BytesIO()
    draw_test_image("star", "green").save(buffer, format="PNG")
    _Images.png = buffer.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def allowing(shapes_engine, tmp_path_factory):
    config = shapes_config(tmp_path_factory.mktemp("fetch"), allow_image_urls="127.0.0.1, images.example.com",
                           max_upload_mb=2.0)
    with LiveServer(make_services(config, shapes_engine)) as live:
        yield live.client()


def url_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def _refused(client, url: str) -> str:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=ask("What shape is it?", url_part(url)), max_tokens=8)
    return refused.value.body["message"]


def test_an_allowed_host_on_loopback_is_still_refused(allowing, images):
    assert "private, loopback or link-local" in _refused(allowing, images + "/star.png")


def test_a_host_not_on_the_list_is_refused(allowing):
    assert "not among the hosts it allows" in _refused(allowing, "https://elsewhere.example.net/a.png")


def test_an_allowed_public_host_is_fetched_with_limits(allowing, images, monkeypatch):
    # The loopback image server stands in for a public host: only the address check is told so.
    monkeypatch.setattr(fetch, "public_address", lambda address: address == "127.0.0.1")
    assert answer(allowing, ask("What shape is it?", url_part(images + "/star.png"))) == "star"
    assert "redirects" in _refused(allowing, images + "/moved.png")
    with pytest.raises(openai.APIStatusError) as too_large:  # 413, as an inline photo over the limit
        allowing.chat.completions.create(model=MODEL, messages=ask("What shape is it?", url_part(images + "/huge.png")),
                                         max_tokens=8)
    assert too_large.value.status_code == 413 and "larger than 2 MB" in too_large.value.body["message"]
    assert "answered 404" in _refused(allowing, images + "/gone.png")
    assert answer(allowing, ask("What shape is it?", url_part(images + "/star.png"))) == "star"
