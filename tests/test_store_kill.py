"""kill -9 while saving: a child process saves one conversation turn after turn, as the
turn layer does (the question with an empty reply marked interrupted, then the answer),
and is killed at a random moment, several times over the same data folder.

After each kill the database must pass integrity_check, and the conversation must be
the last state the child reported committed, or the one it was writing: never half of one.

Run as a script (`python test_store_kill.py child DATA_DIR`), this file is the child.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mmchat.conversation import Conversation, ImagePart, TextPart
from mmchat.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
CONVERSATION_ID = "5" * 32
PHOTOS = [b"photo one", b"photo two", b"photo three"]  # reused: stored once each
LONG = "word " * 2000  # a long answer: each save has something to be killed in the middle of
KILLS = 6


# --- the states, as the child makes them and the parent expects them ---

def advance(conversation: Conversation, save: int, keep_photo) -> None:
    """Change `conversation` as the turn layer does before save number `save` (from 1)."""
    pair = (save - 1) // 2
    if save % 2:
        conversation.add_user([ImagePart(keep_photo(PHOTOS[pair % 3])), TextPart(f"question {pair}")])
        conversation.add_assistant("", status="interrupted")
    else:
        reply = conversation.turns[-1]
        reply.parts = [TextPart(f"answer {pair} {LONG}")]
        reply.status = "interrupted" if pair % 3 == 2 else "complete"  # some were stopped


def expected(saves: int) -> list[tuple]:
    conversation = Conversation(id=CONVERSATION_ID)
    for save in range(1, saves + 1):
        advance(conversation, save, lambda content: content.decode())  # the photo's bytes stand in for its path
    return [(t.role, t.status, t.text, [p.path.encode() for p in t.images]) for t in conversation.turns]


def described(conversation: Conversation | None) -> list[tuple]:
    if conversation is None:
        return []
    return [(t.role, t.status, t.text, [Path(p.path).read_bytes() for p in t.images]) for t in conversation.turns]


def saves_in(conversation: Conversation | None) -> int:
    if conversation is None or not conversation.turns:
        return 0
    waiting = conversation.turns[-1].text == "" and conversation.turns[-1].status == "interrupted"
    return len(conversation.turns) - (1 if waiting else 0)


def child(data: Path) -> None:
    store = SQLiteStore(data)
    conversation = store.load(CONVERSATION_ID) or Conversation(id=CONVERSATION_ID)
    upload = data / "upload.png"

    def keep_photo(content: bytes) -> str:
        upload.write_bytes(content)  # a new upload each time, as from the browser
        return store.keep_media(upload)

    save = saves_in(conversation)
    while True:
        save += 1
        advance(conversation, save, keep_photo)
        store.save(conversation)
        print(save, flush=True)  # committed


# --- the test ---

def _committed(data: Path) -> int:
    """Check the database as a restarted server finds it; the number of saves it holds."""
    with sqlite3.connect(data / "mmchat.sqlite3") as db:  # before the store touches it
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    with SQLiteStore(data) as store:
        conversation = store.load(CONVERSATION_ID)
        saves = saves_in(conversation)
        assert described(conversation) == expected(saves)  # one whole state, its photos there
        assert len(list(store.media.root.glob("??/*"))) <= len(PHOTOS)
    return saves


def test_a_killed_server_keeps_every_committed_turn_and_never_half_of_one(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    reported = 0  # saves the children said were committed
    for run in range(KILLS):
        child_process = subprocess.Popen([sys.executable, __file__, "child", str(data)], cwd=ROOT, env=environment,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if run == 0:  # anywhere from starting up (the schema being made) to the first saves
                time.sleep(chance.uniform(0.0, 0.6))
            else:
                for _ in range(chance.randint(1, 12)):
                    line = child_process.stdout.readline()
                    assert line, f"the child stopped by itself: {child_process.stderr.read()}"
                    reported = int(line)
                time.sleep(chance.uniform(0.0, 0.01))
        finally:
            child_process.send_signal(signal.SIGKILL)
            # Read through the file objects, not communicate(): it reads the pipes
            # directly and would miss lines readline() has buffered already.
            rest, errors = child_process.stdout.read(), child_process.stderr.read()
            child_process.wait()
        assert child_process.returncode == -signal.SIGKILL, errors
        reported = max([reported, *map(int, rest.split())])
        found = _committed(data)
        assert found in (reported, reported + 1), f"seed {seed}, run {run}: {found} saves, {reported} reported"
        reported = found
    assert reported >= KILLS  # the children got somewhere


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(Path(sys.argv[2]))
