"""The sanitiser: every control, format and separator character is shown as its escape."""

from __future__ import annotations

import unicodedata

from hypothesis import given, strategies as st

from hyperconsole.presenters import plain
from hyperconsole.sanitize import visible, visible_lines

HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs")


def test_terminal_sequences_are_shown_not_obeyed():
    assert visible("/mnt/\x1b]0;pwned\x07\x1b[2J") == "/mnt/\\x1b]0;pwned\\x07\\x1b[2J"
    assert visible("a\x9b31mb\x7f") == "a\\x9b31mb\\x7f"
    assert visible("evil\u202etxt.exe\u200b") == "evil\\u202etxt.exe\\u200b"
    assert visible("one\ntwo\tthree\r") == "one\\ntwo\\tthree\\r"
    assert visible("tag\U000e0041") == "tag\\U000e0041"


def test_ordinary_text_is_unchanged():
    for text in ("web [red]x", "${evil}", 'quote"d', "café-ü", "日本語 VM", "C:\\path", "", "a b"):
        assert visible(text) == text
    assert visible(None) == "" and visible(42) == "42"


def test_every_hidden_character_of_the_unicode_database_is_escaped():
    missed = [hex(c) for c in range(0x110000) if unicodedata.category(chr(c)) in HIDDEN and visible(chr(c)) == chr(c)]
    assert missed == []


@given(st.text(alphabet=st.characters(codec=None)))
def test_output_never_holds_a_hidden_character(text):
    shown = visible(text)
    assert not any(unicodedata.category(ch) in HIDDEN for ch in shown)
    assert visible(shown) == shown  # a second pass changes nothing


@given(st.text(alphabet=st.characters(blacklist_categories=HIDDEN)))
def test_text_without_hidden_characters_passes_through(text):
    assert visible(text) == text


def test_visible_lines_keeps_line_breaks_and_escapes_the_rest():
    assert visible_lines("Used by: vm\x1b[2J\nThey lose this network.\r") == (
        "Used by: vm\\x1b[2J\nThey lose this network.\\r")
    assert visible_lines(None) == ""


def test_plain_is_the_door_for_table_cells():
    cell = plain("vm\x1b[2J [bold]x[/]")
    assert cell.plain == "vm\\x1b[2J [bold]x[/]" and not cell.spans
