from pathlib import Path

from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart


def _chat(tmp_path: Path) -> Conversation:
    photo = tmp_path / "a.png"
    photo.write_bytes(b"\x89PNG fake")
    conversation = Conversation()
    conversation.add_user([ImagePart(str(photo)), TextPart("What is this?")])
    conversation.add_assistant("A cat.")
    conversation.add_user([AudioPart(str(tmp_path / "q.wav"), "Is it asleep?", "en", 1.5)])
    conversation.add_assistant("Yes", status="interrupted")
    return conversation


def test_openai_messages_carry_text_images_and_transcripts(tmp_path):
    messages = _chat(tmp_path).to_openai("Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["image_url"]["url"] == (tmp_path / "a.png").resolve().as_uri()
    assert messages[1]["content"][1] == {"type": "text", "text": "What is this?"}
    assert messages[3]["content"] == [{"type": "text", "text": "Is it asleep?"}]
    assert messages[4]["content"] == "Yes"  # an interrupted answer is kept as far as it got


def test_failed_answers_are_not_sent_to_the_model(tmp_path):
    conversation = _chat(tmp_path)
    conversation.turns[-1].status = "error"
    assert [m["role"] for m in conversation.to_openai()] == ["user", "assistant", "user"]


def test_openai_round_trip_keeps_order_and_inlines_images_when_asked(tmp_path):
    original = _chat(tmp_path)
    inline = original.to_openai(inline_images=True)
    assert inline[0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    rebuilt = Conversation.from_openai(inline, media_dir=tmp_path / "media")
    assert [t.role for t in rebuilt.turns] == ["user", "assistant", "user", "assistant"]
    assert Path(rebuilt.turns[0].images[0].path).read_bytes() == (tmp_path / "a.png").read_bytes()
    assert rebuilt.turns[0].text == "What is this?"
    assert rebuilt.turns[2].text == "Is it asleep?"


def test_json_round_trip_keeps_everything(tmp_path):
    original = _chat(tmp_path)
    restored = Conversation.from_json(original.to_json())
    assert restored.id == original.id
    assert restored.turns == original.turns


def test_editing_the_last_question_keeps_its_photos_and_drops_its_answer(tmp_path):
    conversation = Conversation()
    conversation.add_user([ImagePart("one.png"), ImagePart("two.png"), TextPart("old")])
    conversation.add_assistant("old answer")
    conversation.edit_last_user_text("new")
    assert len(conversation.turns) == 1
    assert [p.path for p in conversation.turns[0].images] == ["one.png", "two.png"]
    assert conversation.turns[0].text == "new"


def test_web_image_urls_are_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="web addresses"):
        Conversation.from_openai([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.invalid/x.png"}}]}])


def test_markdown_export_has_both_sides_and_marks_stopped_answers(tmp_path):
    text = _chat(tmp_path).to_markdown()
    assert "**You:**" in text and "**Assistant:**" in text
    assert "![photo](a.png)" in text
    assert "*(stopped)*" in text
