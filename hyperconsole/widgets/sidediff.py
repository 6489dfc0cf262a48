"""A diff of two texts, side by side (a Rich table: removed lines red on the left, added green on
the right) where there is room, unified (one column, `-`/`+` lines) where there is not. Texts come
from files the operator may have edited: shown literally, never markup, control characters made
visible."""

from __future__ import annotations

import difflib

from rich.table import Table
from rich.text import Text

from hyperconsole.sanitize import visible


def side_by_side(old: str | None, new: str | None, *, old_title: str = "now", new_title: str = "after") -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
    table.add_column(Text(old_title, "bold"), ratio=1, overflow="fold")
    table.add_column(Text(new_title, "bold"), ratio=1, overflow="fold")
    left = [visible(line) for line in (old or "").splitlines()]
    right = [visible(line) for line in (new or "").splitlines()]
    if old is None:
        left = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            for a, b in zip(left[a0:a1], right[b0:b1]):
                table.add_row(Text(a, "dim"), Text(b, "dim"))
            continue
        olds, news = left[a0:a1], right[b0:b1]
        for i in range(max(len(olds), len(news))):
            table.add_row(
                Text("- " + olds[i], "red") if i < len(olds) else Text(""),
                Text("+ " + news[i], "green") if i < len(news) else Text(""),
            )
    return table


def unified(old: str | None, new: str | None, *, old_title: str = "now", new_title: str = "after") -> Text:
    lines = difflib.unified_diff([visible(line) for line in (old or "").splitlines()],
                                 [visible(line) for line in (new or "").splitlines()],
                                 fromfile=old_title, tofile=new_title, lineterm="", n=3)
    text = Text(no_wrap=False, overflow="fold")
    for number, line in enumerate(lines):
        if number < 2:  # the ---/+++ header; a removed "--" line further down is content
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = {"-": "red", "+": "green"}.get(line[:1], "dim")
        text.append(line + "\n", style)
    return text
