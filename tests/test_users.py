"""Users (--auth): password hashes, the `python -m mmchat.users` command, log-in, log-out
and expiry through the real server, and each user kept to their own conversations and
files by the page, the API and by URL.

The servers here are mmchat.server's app (the page mounted beside the API) under uvicorn
on loopback; the page is driven through its own Gradio events with gradio_client, which
sends the log-in cookie as a browser would.
"""

from __future__ import annotations

import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client, handle_file

from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.config import Config
from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart
from mmchat.engine.local import create_local_engine
from mmchat.store import DATABASE_NAME, LOCAL_OWNER, SQLiteStore
from mmchat.transfer import save_export
from mmchat.web.page import build_ui
from mmchat.users import AccountError, Accounts
from mmchat.users.passwords import hash_password, verify_password
from mmchat.users.web import COOKIE, safe_next
from test_api_support import LiveServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))


def shapes_config(data: Path, **changes) -> Config:
    return Config(model=str(shapes_vlm_path()), device="cpu", data_dir=data, temperature=0.0,
                  stt_backend="none", tts_backend="none", **changes)


def users_command(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmchat.users", "--data-dir", str(data), *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120)


def on_a_terminal(data: Path, *args: str, typed: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `python -m mmchat.users` on a pseudo-terminal (its stdin, stdout and stderr) in a
    session of its own, so no terminal of the test's can be asked instead. Each
    (prompt, line) of `typed`: once `prompt` shows, the line is typed. Its exit status and
    all it showed (a password typed shows only if it was echoed)."""
    main, terminal = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "mmchat.users", "--data-dir", str(data), *args], cwd=ROOT,
                               stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    shown, start, deadline = b"", 0, time.monotonic() + 120

    def read() -> bool:  # False once the command has closed the terminal
        nonlocal shown
        if not select.select([main], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"the command stopped showing anything: {shown!r}")
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the other side is closed
            return False
        shown += chunk
        return bool(chunk)

    try:
        for prompt, line in typed:
            while (found := shown.find(prompt.encode(), start)) < 0:
                assert read(), f"it ended before asking {prompt!r}: {shown!r}"
            start = found + len(prompt)
            os.write(main, line.encode() + b"\n")
        while read():
            pass
        status = process.wait(60)
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, shown.decode().replace("\r\n", "\n")


def log_in(url: str, name: str, password: str | None = None) -> str:
    reply = httpx.post(url + "/login", data={"name": name, "password": password or PASSWORDS[name]})
    assert reply.status_code == 303, reply.text
    return reply.cookies[COOKIE]


_CLIENTS: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:  # a client left open holds its stream, and the server's stop waits for it
        _CLIENTS.pop().close()


def page_client(url: str, token: str | None) -> Client:
    headers = {"Cookie": f"{COOKIE}={token}"} if token else None
    # download_files=False: the answers keep the URLs the page itself would fetch.
    client = Client(url + "/", verbose=False, headers=headers, download_files=False)
    _CLIENTS.append(client)
    return client


def ask(text: str, *files: Path) -> tuple:
    """The page's submit event's arguments: the message box and the settings."""
    return ({"text": text, "files": [handle_file(str(f)) for f in files]}, 16, 0.0, False, "auto", 1.0)


def choose_in_list(client: Client, url: str, token: str, conversation_id: str):
    """What the page sends when a conversation in its list is clicked (static/sidebar.js: the
    event's data holds the id, which gradio_client cannot send), on `client`'s session; the
    event's outputs."""
    fn_index = next(d["id"] for d in client.config["dependencies"] if d.get("api_name") == "on_open")
    body = {"data": [None, "", False], "event_data": {"id": conversation_id}, "fn_index": fn_index,
            "trigger_id": None, "session_hash": client.session_hash}
    cookies = {COOKIE: token}
    assert httpx.post(url + "/gradio_api/queue/join", json=body, cookies=cookies, timeout=30).status_code == 200
    with httpx.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": client.session_hash},
                      cookies=cookies, timeout=60) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                return message["output"]["data"]
    raise AssertionError("the event never completed")


def file_urls(value) -> list[str]:
    """Every file URL in the page's outputs, as the browser would fetch them."""
    found = []
    if isinstance(value, dict):
        if isinstance(value.get("url"), str) and "/gradio_api/file=" in value["url"]:
            found.append(value["url"])
        for inner in value.values():
            found += file_urls(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            found += file_urls(inner)
    return found


def fetch(url: str, token: str | None = None, **headers) -> httpx.Response:
    cookies = {COOKIE: token} if token else None
    return httpx.get(url, cookies=cookies, headers=headers, timeout=60)


def file_url(base: str, path: Path | str) -> str:
    return f"{base}/gradio_api/file={quote(str(path))}"


# --- passwords ---

def test_passwords_are_kept_as_salted_argon2id_hashes():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$") and "correct horse" not in first
    assert first != second  # a salt of its own each time
    assert verify_password(first, "correct horse")
    assert not verify_password(first, "correct horsE")
    assert not verify_password(None, "correct horse")  # no such user
    assert not verify_password("not a hash", "correct horse")


def test_accounts_refuse_bad_names_short_passwords_and_duplicates(tmp_path):
    with Accounts(tmp_path) as accounts:
        for name in ("local", "Alice", "../x", "", "a" * 33):
            with pytest.raises(AccountError):
                accounts.add_user(name, "long enough")
        with pytest.raises(AccountError, match="at least 8"):
            accounts.add_user("alice", "short")
        accounts.add_user("alice", "long enough")
        with pytest.raises(AccountError, match="already"):
            accounts.add_user("alice", "another one")
        assert accounts.log_in("alice", "long enough") is not None
        assert accounts.log_in("alice", "wrong one") is None
        assert accounts.log_in("nobody", "long enough") is None


def test_only_paths_on_this_server_are_followed_after_log_in():
    assert safe_next("/?x=1") == "/?x=1"
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example", "", None, "javascript:x"):
        assert safe_next(elsewhere) == "/"


# --- the command ---

def test_the_command_adds_lists_keys_and_removes_users_with_their_conversations(tmp_path):
    data = tmp_path / "data"
    added = users_command(data, "add", "alice", "--password-stdin", stdin="alice-password\n")
    assert added.returncode == 0, added.stderr
    assert "Added alice" in added.stdout
    again = users_command(data, "add", "alice", "--password-stdin", stdin="other-password\n")
    assert again.returncode == 2 and "already a user 'alice'" in again.stderr
    short = users_command(data, "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr

    key_made = users_command(data, "add-key", "alice")
    assert key_made.returncode == 0, key_made.stderr
    key = re.search(r"^mmchat-\S+$", key_made.stdout, re.M).group(0)
    key_id = key.split("-")[1]
    listed = subprocess.run([sys.executable, "-m", "mmchat.users", "list", "--data-dir", str(data)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # the folder named after the command
    assert "alice" in listed.stdout and key_id in listed.stdout
    assert key not in listed.stdout  # a key is shown once, when made
    with Accounts(data) as accounts:
        assert accounts.user_of_key(key) == "alice"
        assert accounts.log_in("alice", "alice-password") is not None
    assert users_command(data, "remove-key", key_id).returncode == 0
    with Accounts(data) as accounts:
        assert accounts.user_of_key(key) is None

    # alice's conversation, with a recording only she has; someone else's stays.
    recording = tmp_path / "q.wav"
    recording.write_bytes(b"RIFF alice's question")
    with SQLiteStore(data) as store:
        hers, theirs = Conversation(), Conversation()
        hers.add_user([AudioPart(str(recording), "Hello?", "en", 1.0)])
        theirs.add_user([TextPart("Mine")])
        store.save(hers, "alice")
        store.save(theirs, "carol")
        stored = Path(store.load(hers.id, "alice").turns[0].parts[0].path)
    assert stored.is_file()

    kept = users_command(data, "remove", "alice", stdin="no\n")
    assert kept.returncode == 1 and "Nothing was removed" in kept.stdout
    removed = users_command(data, "remove", "alice", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "Removed alice and 1 conversation." in removed.stdout
    assert "No users yet" in users_command(data, "list").stdout
    with SQLiteStore(data, media_grace=0) as store:
        assert store.list_conversations("alice") == []
        assert store.load(hers.id, "alice") is None
        assert store.load(theirs.id, "carol") is not None
        store.collect_garbage()
    assert not stored.exists()  # her recording went with her
    missing = users_command(data, "remove", "alice", "--yes")
    assert missing.returncode == 2 and "no user 'alice'" in missing.stderr


def test_on_a_terminal_a_password_that_cant_be_used_is_asked_for_again(tmp_path):
    data = tmp_path / "data"
    status, shown = on_a_terminal(data, "add", "alice", typed=[
        ("Password: ", "q7z"),  # too short
        ("Password: ", "alice-password"), ("again: ", "alice-typo"),  # not the same twice
        ("Password: ", "alice-password"), ("again: ", "alice-password")])
    assert status == 0, shown
    assert "too short: use at least 8 characters. Try again." in shown
    assert "The two passwords differ. Try again." in shown
    assert "Added alice" in shown
    assert "q7z" not in shown and "alice-password" not in shown and "alice-typo" not in shown  # never echoed
    with Accounts(data) as accounts:
        assert accounts.log_in("alice", "alice-password") is not None

    # Three tries, as passwd gives: then nothing is added.
    status, shown = on_a_terminal(data, "add", "bob", typed=[("Password: ", "short")] * 3)
    assert status == 2, shown
    assert shown.count("Password: ") == 3
    assert "too short: use at least 8 characters. Nothing was changed" in shown
    with Accounts(data) as accounts:
        assert not accounts.has_user("bob")


def test_from_a_pipe_a_short_password_ends_the_command(tmp_path):
    data = tmp_path / "data"
    # A session of its own: getpass can't open a terminal, so it reads the pipe, as in a
    # script. Lines that would do on a second try are there: they must not be read.
    piped = subprocess.run([sys.executable, "-m", "mmchat.users", "--data-dir", str(data), "add", "bob"], cwd=ROOT,
                           input="short\nshort\nbob-password\nbob-password\n", capture_output=True, text=True,
                           timeout=120, start_new_session=True)
    assert piped.returncode == 2, piped.stderr
    assert "too short: use at least 8 characters. Nothing was changed" in piped.stderr
    assert "Try again" not in piped.stderr
    with Accounts(data) as accounts:
        assert not accounts.has_user("bob")


def test_adopt_gives_a_user_the_conversations_and_exports_made_without_auth(tmp_path):
    data = tmp_path / "data"
    photo = tmp_path / "square.png"
    draw_test_image("square", "red").save(photo)
    with SQLiteStore(data) as store:
        earlier = []
        for question in ("What is this?", "And this?"):
            conversation = Conversation()
            conversation.add_user([ImagePart(str(photo)), TextPart(question)])
            store.save(conversation)  # no owner: made without --auth
            earlier.append(conversation.id)
        carols = Conversation()
        carols.add_user([TextPart("Mine")])
        store.save(carols, "carol")
        exported = save_export(store.load(earlier[0]), data / "exports", title="What is this?")
        stored_photo = Path(store.load(earlier[0]).turns[0].parts[0].path)
    # alice has an export of the same name already: it is kept, the one moved in numbered.
    hers = data / "exports" / "alice" / exported.name
    hers.parent.mkdir(parents=True)
    hers.write_bytes(b"alice's own")

    nobody = users_command(data, "adopt", "alice")
    assert nobody.returncode == 2 and "no user 'alice'" in nobody.stderr and "add alice" in nobody.stderr
    assert users_command(data, "adopt", LOCAL_OWNER).returncode == 2  # not a user's name
    with SQLiteStore(data) as store:
        assert store.conversation_count(LOCAL_OWNER) == 2  # nothing moved
    assert exported.is_file()

    assert users_command(data, "add", "alice", "--password-stdin", stdin="alice-password\n").returncode == 0
    adopted = users_command(data, "adopt", "alice")
    assert adopted.returncode == 0, adopted.stderr
    assert "Moved 2 conversations made without --auth to alice, and 1 export to" in adopted.stdout
    with SQLiteStore(data) as store:
        assert sorted(s.id for s in store.list_conversations("alice")) == sorted(earlier)
        assert store.list_conversations(LOCAL_OWNER) == []
        assert store.load(earlier[0]) is None  # no longer the no-log-in owner's
        moved = store.load(earlier[0], "alice")
        assert moved.turns[0].parts[1].text == "What is this?"
        assert Path(moved.turns[0].parts[0].path) == stored_photo and stored_photo.is_file()  # the photo came along
        assert store.owner_uses_media("alice", store.media.digest_of(stored_photo))
        assert [s.id for s in store.list_conversations("carol")] == [carols.id]  # others' stay theirs
    assert not exported.exists()
    assert hers.read_bytes() == b"alice's own"
    assert sorted(p.name for p in hers.parent.iterdir()) == sorted([hers.name, f"{exported.stem}-2.zip"])

    again = users_command(data, "adopt", "alice")
    assert again.returncode == 0, again.stderr
    assert "Moved 0 conversations" in again.stdout and "nothing was given to alice" in again.stdout
    with SQLiteStore(data) as store:
        assert store.conversation_count("alice") == 2
    assert len(list(hers.parent.iterdir())) == 2


# --- log-in, log-out, expiry ---

@pytest.fixture
def auth_server(shapes_engine, tmp_path):
    data = tmp_path / "data"
    with Accounts(data) as accounts:
        for name, password in PASSWORDS.items():
            accounts.add_user(name, password)
    services = make_services(shapes_config(data, auth=True, max_new_tokens=8), shapes_engine)
    with LiveServer(services, build_ui(services)) as live:
        yield live


def test_the_page_asks_strangers_to_log_in_and_log_out_ends_the_session(auth_server):
    url = auth_server.url
    visit = httpx.get(url + "/")
    assert visit.status_code == 303 and visit.headers["location"] == "/login?next=%2F"
    assert httpx.get(url + "/gradio_api/info").status_code == 401  # Gradio's routes too
    assert httpx.get(url + "/config").status_code == 401

    form = httpx.get(url + "/login")
    assert form.status_code == 200
    page = form.text
    assert '<html lang="en">' in page and page.count("<h1>") == 1
    assert '<label for="name">' in page and 'id="name"' in page
    assert '<label for="password">' in page and 'type="password"' in page

    wrong = httpx.post(url + "/login", data={"name": "alice", "password": "not her password"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    assert 'role="alert"' in wrong.text and "user name or password is not right" in wrong.text
    assert 'value="alice"' in wrong.text  # the name stays filled in

    right = httpx.post(url + "/login", data={"name": "alice", "password": PASSWORDS["alice"], "next": "/"})
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie  # plain http here
    token = right.cookies[COOKIE]
    assert fetch(url + "/", token).status_code == 200

    out = httpx.post(url + "/logout", cookies={COOKIE: token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert COOKIE in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    # The token itself is dead, not just the browser's copy of it.
    assert httpx.get(url + "/", cookies={COOKIE: token}).status_code == 303


@pytest.mark.parametrize("column", ["last_seen", "created"])
def test_a_session_ends_when_idle_or_too_old(auth_server, column):
    url = auth_server.url
    token = log_in(url, "alice")
    assert fetch(url + "/", token).status_code == 200
    config = auth_server.services.config
    limit = {"last_seen": config.session_idle_hours, "created": config.session_hours}[column] * 3600
    db = sqlite3.connect(config.data_dir / DATABASE_NAME)
    with db:  # as if the limit had passed since
        db.execute(f"UPDATE login_sessions SET {column} = {column} - ?", (limit + 1,))
    db.close()
    assert httpx.get(url + "/", cookies={COOKIE: token}).status_code == 303
    assert fetch(url + "/", log_in(url, "alice")).status_code == 200  # logging in again works


# --- two users at once ---

def test_two_users_logged_in_at_once_see_and_fetch_only_their_own(auth_server, tmp_path):
    url = auth_server.url
    store = auth_server.services.open_store()
    data = auth_server.services.config.data_dir
    alice, bob = log_in(url, "alice"), log_in(url, "bob")
    photo = tmp_path / "square.png"
    draw_test_image("square", "yellow").save(photo)

    # alice asks about a photo through the page, and gets its export.
    her_page = page_client(url, alice)
    chat, conversation_id, _ = her_page.predict("", api_name="/on_load")
    assert chat == []
    answer = her_page.predict(*ask(QUESTION, photo), api_name="/on_submit")
    assert answer[2] == "yellow"  # the announcement: what the model said
    urls = file_urls(answer)
    photo_url = next(u for u in urls if "/media/" in u)
    export_url = next(u for u in file_urls(her_page.predict(api_name="/on_export")) if u.endswith(".zip"))
    # An earlier spoken question of hers, saved, and opened by her page: a recording's URL.
    recording = tmp_path / "question.wav"
    recording.write_bytes(b"RIFF alice's spoken question")
    spoken = Conversation()
    spoken.add_user([AudioPart(str(recording), "Is it round?", "en", 1.0)])
    spoken.add_assistant("No.")
    store.save(spoken, "alice")
    reopened = page_client(url, alice).predict(spoken.id, api_name="/on_load")
    recording_url = next(u for u in file_urls(reopened) if "/media/" in u)
    # And an upload she has not sent yet (the message box previews it by this path).
    upload = httpx.post(url + "/gradio_api/upload", cookies={COOKIE: alice},
                        files={"files": ("pending.png", photo.read_bytes(), "image/png")})
    assert upload.status_code == 200
    upload_path = upload.json()[0]
    upload_url = file_url(url, upload_path)

    hers = [photo_url, export_url, recording_url, upload_url]
    for her_url in hers:
        assert fetch(her_url, alice).status_code == 200, her_url
    assert fetch(photo_url, alice).content == photo.read_bytes()

    # bob, logged in at the same time, gets none of it by the URLs her page used ...
    for her_url in hers:
        assert fetch(her_url, bob).status_code in (403, 404), her_url
        assert fetch(her_url).status_code == 401, her_url  # nor does anyone not logged in
    # ... nor by Gradio's older file route, nor a path that only leads there.
    photo_path = photo_url.split("/gradio_api/file=", 1)[1]
    assert fetch(f"{url}/gradio_api/file/{photo_path}", bob).status_code in (403, 404)
    sneaky = f"{data}/exports/bob/../alice/{Path(export_url).name}"
    assert fetch(file_url(url, sneaky), bob).status_code in (403, 404)
    # Opening her conversation by its id gives him a new chat of his own.
    his_page = page_client(url, bob)
    his_chat, his_id, _ = his_page.predict(conversation_id, api_name="/on_load")
    assert his_chat == [] and his_id != conversation_id  # nothing of hers
    assert not file_urls(his_page.predict(api_name="/on_export"))  # her conversation is not his to export
    assert his_page.predict(spoken.id, api_name="/on_load")[0] == []
    # Nor does the history sidebar list or open it for him (it does for her).
    assert conversation_id in str(her_page.predict("", "", api_name="/listing"))
    assert conversation_id not in str(his_page.predict("", "", api_name="/listing"))
    opened = choose_in_list(his_page, url, bob, conversation_id)  # her id, as if it were in his list
    assert "yellow" not in str(opened) and not [u for u in file_urls(opened) if "/media/" in u]
    assert "no longer there" in str(opened)
    assert choose_in_list(her_page, url, alice, conversation_id) is not None  # hers to open
    assert [c.id for c in store.list_conversations("bob")] == []
    assert {c.id for c in store.list_conversations("alice")} == {conversation_id, spoken.id}
    # He can't send her upload to the model as his own question.
    event = {"data": [{"text": QUESTION, "files": [{"path": upload_path, "meta": {"_type": "gradio.FileData"}}]},
                      16, 0.0, False, "auto", 1.0], "fn_index": 0, "session_hash": "bobsession"}
    assert httpx.post(url + "/gradio_api/queue/join", json=event, cookies={COOKIE: bob}).status_code == 403
    assert httpx.post(url + "/gradio_api/queue/join", json=event, cookies={COOKIE: alice}).status_code != 403

    # With his API key he gets the API, and still none of her files.
    with Accounts(data) as accounts:
        his_key = accounts.add_key("bob")
    assert httpx.get(url + "/v1/models").status_code == 401  # with --auth the API needs a key
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer not-a-key"}).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {his_key}"}).status_code == 200
    for her_url in hers:
        assert fetch(her_url, Authorization=f"Bearer {his_key}").status_code in (401, 403, 404), her_url
    # The database is no one's to download.
    for token in (alice, bob):
        assert fetch(file_url(url, data / DATABASE_NAME), token).status_code in (403, 404)


def test_an_api_key_works_only_while_its_user_has_it(auth_server):
    data = auth_server.services.config.data_dir
    with Accounts(data) as accounts:
        key = accounts.add_key("alice")
    client = auth_server.client(api_key=key)
    reply = client.chat.completions.create(model="any", max_tokens=4, temperature=0, messages=[
        {"role": "user", "content": "Hello"}])
    assert reply.choices[0].message.content is not None
    with Accounts(data) as accounts:
        accounts.remove_key(key)
    assert httpx.get(auth_server.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401


# --- without --auth ---

def test_without_auth_the_page_and_its_files_work_as_before(shapes_engine, tmp_path):
    data = tmp_path / "data"
    services = make_services(shapes_config(data, max_new_tokens=8), shapes_engine)
    photo = tmp_path / "square.png"
    draw_test_image("square", "yellow").save(photo)
    with LiveServer(services, build_ui(services)) as live:
        assert httpx.get(live.url + "/").status_code == 200  # no log-in
        assert "Log in to mmchat" not in httpx.get(live.url + "/login").text  # nor a log-in page of ours
        page = page_client(live.url, None)
        _, conversation_id, _ = page.predict("", api_name="/on_load")
        answer = page.predict(*ask(QUESTION, photo), api_name="/on_submit")
        assert answer[2] == "yellow"
        urls = file_urls(answer) + file_urls(page.predict(api_name="/on_export"))  # the export, once asked for
        assert any(u.endswith(".zip") for u in urls) and any(u.endswith(".png") for u in urls)
        for shown in urls:
            assert fetch(shown).status_code == 200, shown
        # Reopened after a reload, with the local person's conversation.
        assert page_client(live.url, None).predict(conversation_id, api_name="/on_load")[1] == conversation_id
        assert [c.id for c in services.open_store().list_conversations()] == [conversation_id]
        assert (data / "exports").is_dir() and not (data / "exports" / "local").exists()
        # The photos and exports are served, the database is not (it was, before users).
        assert fetch(file_url(live.url, data / DATABASE_NAME)).status_code == 403
        assert httpx.get(live.url + "/v1/models").status_code == 200  # no key needed on loopback


def test_auth_with_share_is_refused_with_a_reason(tmp_path):
    result = subprocess.run([sys.executable, "app.py", "--auth", "--share", "--data-dir", str(tmp_path / "d"),
                             "--model", str(shapes_vlm_path()), "--device", "cpu", "--stt-backend", "none",
                             "--tts-backend", "none"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--auth can't be used with --share" in result.stderr


def test_app_with_auth_and_no_users_says_how_to_add_one_and_to_give_them_the_earlier_chats(tmp_path):
    from test_api_support import free_port

    data, port, log = tmp_path / "data", free_port(), tmp_path / "app.log"
    with SQLiteStore(data) as store:  # chats from before --auth was turned on
        for question in ("First chat", "Second chat"):
            earlier = Conversation()
            earlier.add_user([TextPart(question)])
            store.save(earlier)
    command = [sys.executable, "app.py", "--auth", "--port", str(port), "--data-dir", str(data),
               "--model", str(shapes_vlm_path()), "--device", "cpu", "--stt-backend", "none", "--tts-backend", "none"]
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(240):  # up to two minutes on a busy machine
                try:
                    if httpx.get(base + "/login", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
            else:
                raise AssertionError(log.read_text())
            said = log.read_text()
            assert f"python -m mmchat.users --data-dir {data} add NAME" in said
            assert (f"2 earlier conversations, made without --auth (in {data / DATABASE_NAME}), belong to no user"
                    in said)
            assert f"python -m mmchat.users --data-dir {data} adopt NAME" in said
            assert httpx.get(base + "/").status_code == 303
            # Added while the server runs, the user can log in at once.
            assert users_command(data, "add", "alice", "--password-stdin", stdin="alice-password\n").returncode == 0
            assert fetch(base + "/", log_in(base, "alice")).status_code == 200
            # and be given the earlier chats while it runs.
            assert "Moved 2 conversations" in users_command(data, "adopt", "alice").stdout
        finally:
            process.terminate()
            process.wait(30)
    assert "Traceback" not in log.read_text()


# --- in a real browser ---

def _log_in_by_keyboard(page, url: str, name: str) -> None:
    page.goto(url + "/", wait_until="load", timeout=60_000)
    assert "/login" in page.url  # sent to log in first
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")
    page.keyboard.type(name)  # the name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS[name])
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/", timeout=60_000)


def test_in_a_browser_each_user_sees_their_photo_and_not_the_others(auth_server, tmp_path):
    from playwright.sync_api import expect

    from test_browser import needs_chromium, two_chromiums

    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    url = auth_server.url
    photo = tmp_path / "square.png"
    draw_test_image("square", "yellow").save(photo)
    with two_chromiums() as (hers, his):
        hers.failed = []
        hers.on("response", lambda r: hers.failed.append((r.status, r.url)) if r.status >= 400 else None)
        hers.on("console", lambda m: hers.failed.append(m.location) if m.type == "error" else None)
        hers.goto(url + "/login", wait_until="load")
        hers.keyboard.press("Enter")  # nothing typed: the browser asks for the name, nothing is sent
        assert "/login" in hers.url
        _log_in_by_keyboard(hers, url, "alice")
        expect(hers.locator("#model-status")).to_contain_text("Model:", timeout=60_000)
        hers.locator("#message input[type=file]").set_input_files(str(photo))
        expect(hers.locator("#message img")).to_have_count(1, timeout=30_000)  # her upload's preview
        hers.locator("#message textarea").fill(QUESTION)
        hers.locator("#message textarea").press("Enter")
        expect(hers.locator('[data-testid="bot"]').last).to_contain_text("yellow", timeout=60_000)
        shown = hers.locator('[data-testid="user"] img').first
        expect(shown).to_have_count(1)
        hers.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=shown.element_handle(),
                               timeout=30_000)  # the photo is served to her
        photo_src = shown.get_attribute("src")
        assert not hers.errors, f"console errors: {hers.errors} {hers.failed}"

        _log_in_by_keyboard(his, url, "bob")
        expect(his.locator("#model-status")).to_contain_text("Model:", timeout=60_000)
        expect(his.locator('[data-testid="user"]')).to_have_count(0)  # her conversation is not his
        refused = his.request.get(photo_src if photo_src.startswith("http") else url + photo_src)
        assert refused.status in (403, 404)

        hers.get_by_role("button", name="Log out").click()
        hers.wait_for_url(re.compile(r".*/login$"), timeout=30_000)
        again = hers.request.get(photo_src if photo_src.startswith("http") else url + photo_src)
        assert again.status == 401  # logged out: her own photo needs a log-in again
