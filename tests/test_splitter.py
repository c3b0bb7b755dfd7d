"""The streaming sentence splitter: nothing lost, nothing empty, the same however the text arrives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mmchat.tts.splitter import SentenceSplitter


def split(text: str, **limits) -> list[str]:
    splitter = SentenceSplitter(**limits)
    return splitter.feed(text) + splitter.flush()


def split_in_pieces(pieces: list[str], **limits) -> list[str]:
    splitter = SentenceSplitter(**limits)
    units = []
    for piece in pieces:
        units += splitter.feed(piece)
    return units + splitter.flush()


def no_space(text: str) -> str:
    return "".join(text.split())


# Pieces of LLM replies where splitting goes wrong: abbreviations, numbers, lists,
# ellipses, CJK punctuation, markdown, code fences, URLs, emoji.
TRICKY = [
    "Dr.", "Mr.", "e.g.", "i.e.", "etc.", "U.S.", "J.", "p.m.", "3.14", "$4.50", "1.", "2)",
    ".", "!", "?", "...", "…", ",", ";", ":", "。", "！", "？", "，", "；", "、",
    " ", " ", " ", "\n", "\n\n", "  ", "\t",
    "Hello", "world", "the", "cat", "Smith", "A", "b", "你好", "今天", "ですか", "안녕",
    "**", "*", "_", "`", "```", "```python\n", "~~~", "# ", "- ", "> ", "|", "[link](https://x.org/a.b)",
    "https://www.example.com/path?q=1", "😀", "👍🏽", '"', "'", ")", "(", "」", "”",
]
replies = st.lists(st.sampled_from(TRICKY), max_size=60).map("".join)
any_text = st.one_of(replies, st.text(max_size=300))


@st.composite
def text_and_pieces(draw):
    text = draw(any_text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_every_character_is_kept_in_order(text):
    assert no_space("".join(split(text))) == no_space(text)


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_units_are_never_empty_and_carry_no_outer_whitespace(text):
    for unit in split(text):
        assert unit and unit == unit.strip()


@settings(max_examples=400, deadline=None)
@given(text_and_pieces())
def test_deltas_cut_anywhere_give_the_same_units_as_the_whole_text(case):
    text, pieces = case
    assert split_in_pieces(pieces) == split(text)
    small = {"max_chars": 40, "first_max_chars": 15}
    assert split_in_pieces(list(text), **small) == split(text, **small)
    early = {"max_chars": 40, "first_max_chars": 15, "first_clause_chars": 6}
    assert split_in_pieces(pieces, **early) == split(text, **early)
    assert no_space("".join(split(text, **early))) == no_space(text)


def test_a_sentence_is_released_as_soon_as_the_next_one_starts():
    splitter = SentenceSplitter()
    assert splitter.feed("The cat is asleep.") == []  # "." might still be "..." or "3.14"
    assert splitter.feed(" ") == []  # "etc. and" would go on
    assert splitter.feed("It") == ["The cat is asleep."]
    assert splitter.feed(" dreams") == []
    assert splitter.flush() == ["It dreams"]


def test_flush_readies_the_splitter_for_the_next_reply():
    splitter = SentenceSplitter()
    splitter.feed("First reply. Its end")
    assert splitter.flush() == ["Its end"]
    assert splitter.feed("1. Item\n") == ["1. Item"]  # a new reply starts a line again


def test_abbreviations_do_not_end_sentences():
    assert split("Dr. Smith met Mr. Jones, e.g. at noon. The U.S. team won, i.e. twice. We ate etc. and left.") == [
        "Dr. Smith met Mr. Jones, e.g. at noon.",
        "The U.S. team won, i.e. twice.",
        "We ate etc. and left.",
    ]


def test_initials_and_times_stay_in_their_sentence():
    assert split("J. K. Rowling wrote at 5 p.m. Then she slept.") == ["J. K. Rowling wrote at 5 p.m. Then she slept."]


def test_decimals_and_prices_are_not_sentence_ends():
    assert split("Pi is 3.14 and it costs $4.50. Next 2.0 is out.") == [
        "Pi is 3.14 and it costs $4.50.",
        "Next 2.0 is out.",
    ]


def test_numbered_list_items_are_whole_units():
    assert split("Steps:\n1. First do this. Then that.\n2. Second\n10. Tenth") == [
        "Steps:",
        "1. First do this.",
        "Then that.",
        "2. Second",
        "10. Tenth",
    ]


def test_a_number_ending_a_sentence_mid_line_ends_it():
    assert split("I counted 3. Then I stopped.") == ["I counted 3.", "Then I stopped."]


def test_ellipses():
    assert split("Well... I think so. Hmm… maybe. Wait... what?") == [
        "Well...",
        "I think so.",
        "Hmm… maybe.",
        "Wait... what?",
    ]


def test_quotes_and_bold_closing_after_the_full_stop_stay_with_their_sentence():
    assert split('He said "Stop." Then **this is key.** Ok (really!) Yes.') == [
        'He said "Stop."',
        "Then **this is key.**",
        "Ok (really!)",
        "Yes.",
    ]


def test_chinese_and_japanese_full_stops_need_no_space():
    assert split("你好。今天天气很好！你呢？「好的。」我很好") == ["你好。", "今天天气很好！", "你呢？", "「好的。」", "我很好"]
    assert split("これはペンです。あれは何ですか？") == ["これはペンです。", "あれは何ですか？"]


def test_ascii_question_mark_followed_by_chinese_ends_a_sentence():
    assert split("真的吗?我不知道") == ["真的吗?", "我不知道"]


def test_newlines_end_units():
    assert split("# Summary\nThe cat\n- a tabby\n- asleep\n\nDone") == [
        "# Summary",
        "The cat",
        "- a tabby",
        "- asleep",
        "Done",
    ]


def test_a_long_first_sentence_is_cut_at_its_last_clause_early():
    text = (
        "When I looked at the photo carefully, I noticed that the cat sits on a red chair near the window, "
        "which is open, and the light falls on its fur."
    )
    units = split(text)
    assert units[0] == "When I looked at the photo carefully,"
    assert no_space("".join(units)) == no_space(text)
    assert all(len(unit) <= 200 for unit in units)


def test_later_sentences_may_run_longer_before_they_are_cut():
    long = "The cat sits on the red chair by the window, " * 6 + "and it sleeps."  # 284 characters
    first = split(long)
    later = split("Short one. " + long)[1:]
    assert 0 < len(first[0]) <= 80 and first[0].endswith(",")
    assert 80 < len(later[0]) <= 200 and later[0].endswith(",")


def test_a_very_long_sentence_without_clauses_is_cut_at_a_space():
    words = " ".join(["word"] * 80)  # 399 characters, no punctuation
    units = split(words + ".")
    assert len(units) >= 2
    assert all(len(unit) <= 200 for unit in units)
    assert no_space("".join(units)) == no_space(words + ".")


def test_a_run_on_blob_is_cut_anyway():
    blob = "QUJD" * 500  # 2000 characters of base64, no space, no punctuation
    units = split(blob)
    assert len(units) > 1 and "".join(units) == blob
    assert all(len(unit) <= 800 for unit in units)


def test_long_chinese_is_cut_at_a_full_width_comma():
    clause = "我看到一只猫坐在窗边的红色椅子上"  # 16 characters, about 48 in Latin letters
    units = split(f"{clause}，{clause}，{clause}，{clause}。")
    assert units[0] == f"{clause}，"
    assert "".join(units) == f"{clause}，{clause}，{clause}，{clause}。"


def test_a_code_block_is_one_unit_even_with_sentences_inside():
    reply = "Run this:\n```python\nx = 1. \nprint(x)  # Done. Really.\n```\nThat prints 1."
    assert split(reply) == ["Run this:", "```python\nx = 1. \nprint(x)  # Done. Really.\n```", "That prints 1."]


def test_a_code_block_cut_off_by_the_end_of_the_reply_is_still_one_unit():
    assert split("Code:\n~~~\nA. B. C.") == ["Code:", "~~~\nA. B. C."]


def test_inline_backticks_are_not_a_fence():
    assert split("`x` is one. Next.") == ["`x` is one.", "Next."]


def test_urls_are_not_cut():
    assert split("See https://www.example.com/a.b?c=1. Then go.") == [
        "See https://www.example.com/a.b?c=1.",
        "Then go.",
    ]


# --- The first clause, released early for the voice (first_clause_chars) -----------------

LONG_FIRST = (
    "The photo shows two cats curled up together on a red sofa, with afternoon light "
    "coming through the window behind them. The one on the left is a tabby, the other "
    "is black with white paws, and both are asleep."
)


def test_the_first_clause_is_released_as_soon_as_its_comma_is_followed_by_a_space():
    splitter = SentenceSplitter(first_clause_chars=40)
    assert splitter.feed("The photo shows two cats curled up together on a red sofa") == []
    assert splitter.feed(",") == []  # "sofa,000" would not be a clause end
    assert splitter.feed(" ") == ["The photo shows two cats curled up together on a red sofa,"]
    assert splitter.feed("with afternoon light") == []


def test_only_the_first_sentence_of_a_reply_loses_its_first_clause():
    assert split(LONG_FIRST, first_clause_chars=40) == [
        "The photo shows two cats curled up together on a red sofa,",
        "with afternoon light coming through the window behind them.",
        "The one on the left is a tabby, the other is black with white paws, and both are asleep.",
    ]
    # Without the option the first clause waits for the 80 characters that show a long sentence.
    splitter = SentenceSplitter()
    assert splitter.feed(LONG_FIRST[:70]) == []


def test_a_short_first_clause_stays_with_its_sentence():
    assert split("Yes, the cat is asleep. It dreams.", first_clause_chars=40) == [
        "Yes, the cat is asleep.",
        "It dreams.",
    ]
    # Past a short clause, the next clause end that is far enough in is the cut.
    assert split("Well, the photo shows two cats on a red sofa, both asleep in the sun.", first_clause_chars=40) == [
        "Well, the photo shows two cats on a red sofa,",
        "both asleep in the sun.",
    ]


def test_each_reply_has_its_own_first_clause():
    splitter = SentenceSplitter(first_clause_chars=20)
    splitter.feed("The first reply is short. ")
    splitter.flush()
    assert splitter.feed("The second reply has a clause, ") == ["The second reply has a clause,"]


def test_abbreviations_numbers_and_urls_are_not_clause_ends_for_the_first_clause():
    assert split("Dr. Smith counted 3,000 birds at https://example.com/a,b today, then he left.",
                 first_clause_chars=10) == [
        "Dr. Smith counted 3,000 birds at https://example.com/a,b today,",
        "then he left.",
    ]


def test_a_dash_ends_a_first_clause_but_a_range_does_not():
    assert split("It was red or maybe orange—hard to say at dusk.", first_clause_chars=20) == [
        "It was red or maybe orange—",
        "hard to say at dusk.",
    ]
    assert split("The years 1990–1995 were long – very long for everyone.", first_clause_chars=20) == [
        "The years 1990–1995 were long –",
        "very long for everyone.",
    ]
    chinese_dash = "他说——我们走吧，现在就走。"  # "——" is one dash: cut after it, not inside it
    assert split(chinese_dash, first_clause_chars=6) == ["他说——", "我们走吧，现在就走。"]


def test_a_chinese_first_clause_is_cut_at_a_full_width_comma_not_an_enumeration_comma():
    clause = "我看到一只猫坐在窗边的红色椅子上"  # 16 characters, weighing 48
    assert split(f"{clause}，它在睡觉。", first_clause_chars=40) == [f"{clause}，", "它在睡觉。"]
    listing = "桌上有苹果、香蕉、橙子、葡萄、西瓜和一些饼干"
    assert split(f"{listing}。", first_clause_chars=20) == [f"{listing}。"]
