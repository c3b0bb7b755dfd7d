import pytest

from mmchat.history import HistoryTooLong, fit_history


def _message(role, text, images=0):
    content = [{"type": "image_url", "image_url": {"url": f"file:///{i}.png"}} for i in range(images)]
    return {"role": role, "content": content + [{"type": "text", "text": text}] if role == "user" else text}


def _count(messages):
    # 10 tokens a message, 100 per photo
    return sum(10 + 100 * sum(1 for c in (m["content"] if isinstance(m["content"], list) else [])
                              if c["type"] == "image_url") for m in messages)


CHAT = [
    {"role": "system", "content": "sys"},
    _message("user", "first", images=1), _message("assistant", "a1"),
    _message("user", "second"), _message("assistant", "a2"),
    _message("user", "third"),
]


def test_everything_is_kept_within_budget():
    fitted = fit_history(CHAT, _count, 1000)
    assert fitted.messages == CHAT
    assert fitted.notice is None


def test_oldest_whole_exchange_goes_first_and_the_photo_is_reported():
    fitted = fit_history(CHAT, _count, 60)
    assert fitted.messages == [CHAT[0]] + CHAT[3:]  # system prompt kept, no split exchange
    assert fitted.dropped_turns == 1 and fitted.dropped_images == 1
    assert "1 photo" in fitted.notice


def test_the_last_question_is_never_dropped():
    with pytest.raises(HistoryTooLong, match="budget of 15"):
        fit_history(CHAT, _count, 15)
