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


def test_a_long_conversation_is_fitted_with_a_few_counts_not_one_per_turn():
    chat = [{"role": "system", "content": "sys"}]
    for i in range(200):
        chat += [_message("user", f"q{i}", images=1), _message("assistant", f"a{i}")]
    chat.append(_message("user", "last"))
    counted = []

    def count(messages):
        counted.append(len(messages))
        return _count(messages)

    fitted = fit_history(chat, count, 10 + 9 * 120 + 10 + 5)  # the system prompt, 9 exchanges, the question
    assert fitted.messages == [chat[0]] + chat[-19:]
    assert fitted.dropped_turns == 191 and fitted.dropped_images == 191
    assert fitted.tokens == _count(fitted.messages)
    assert len(counted) <= 12  # bisection: about log2(201) + 2, where one count per dropped turn was 192
