"""Python values → Nix text (one deterministic function) and the reader for the subset we write.

The supported values are exactly those that survive a trip through Nix and back unchanged:
dicts with str keys (Nix attrsets), lists/tuples, str, int (64-bit), bool and None. Floats are
refused because Nix prints them with its own precision, so a round trip could not be exact.

Rendering never concatenates user input into Nix syntax unescaped: every string, including attr
names that are not plain identifiers, goes through `_quote` (double-quoted) or `_indented`
(only for multi-line text whose every character is known to survive indented-string rules).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from hyperconsole.errors import ValidationError

NixValue = Any  # dict[str, NixValue] | list[NixValue] | str | int | bool | None

INT_MIN = -(2**63) + 1  # Nix cannot write -2**63 as a literal (2**63 overflows before negation)
INT_MAX = 2**63 - 1
INDENT = "  "
INLINE_LIST_WIDTH = 100

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*\Z")
# `or` is accepted as an attr name by newer Nix only in some positions; quoting is always valid.
_KEYWORDS = frozenset({"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"})
HEADER_PREFIX = "# hyperconsole-"
_META_KEY = re.compile(r"[a-z][a-z0-9-]*\Z")


class NixSyntaxError(ValidationError):
    """A fragment is not in the subset of Nix that hyperconsole writes and reads back."""


def _check_string(text: str, what: str) -> None:
    if "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character, which Nix strings cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what} is not valid Unicode text (lone surrogate)") from exc


def _quote(text: str) -> str:
    """A double-quoted Nix string. Every `$` is escaped so no `${` can ever start interpolation
    (and Nix's `$${` and trailing-`$` lexer corner cases never arise)."""
    _check_string(text, "a string")
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "$":
            out.append("\\$")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _fits_indented(text: str) -> bool:
    """Whether `text` can be written as an indented string ('' … '') with an exact round trip.

    Indented strings strip the smallest leading-space indentation, drop a blank first/last line
    and give `''`, `$` and `\\` special meanings. We use them only where none of that can change
    the text: multi-line text ending in a newline, without tab/CR/`$`/`\\`/`''`, no blank-but-not-
    empty lines, no line starting with whitespace other than spaces, and at least one line with
    no indentation (so the common indentation Nix strips is exactly the one we add).
    """
    if "\n" not in text or not text.endswith("\n"):
        return False
    if any(c in text for c in "\r\t\x00$\\") or "''" in text:
        return False
    flush = False
    for line in text[:-1].split("\n"):
        if not line:
            continue
        if line.strip() == "":
            return False
        body = line.lstrip(" ")
        if body[0].isspace() or body.endswith("'"):
            return False
        flush = flush or body == line
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return flush and not text.startswith("'")


def _indented(text: str, depth: int) -> str:
    pad = INDENT * (depth + 1)
    lines = text[:-1].split("\n")
    body = "\n".join(pad + line if line else "" for line in lines)
    return "''\n" + body + "\n" + INDENT * depth + "''"


def render_key(key: str) -> str:
    if not isinstance(key, str):
        raise ValidationError(f"attribute names must be strings, not {type(key).__name__}")
    if _IDENTIFIER.match(key) and key not in _KEYWORDS:
        return key
    return _quote(key)


def _scalar(value: NixValue) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValidationError(f"integer {value} does not fit in a Nix integer (64-bit)")
        # Parenthesised because `[ -5 ]` is a syntax error in Nix.
        return f"({value})" if value < 0 else str(value)
    if isinstance(value, float):
        raise ValidationError("floating-point values are not supported in fragments (use an integer or a string)")
    return None


def render_value(value: NixValue, depth: int = 0) -> str:
    """Render one value; nested attrsets/lists are indented by `depth` levels of two spaces."""
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return _indented(value, depth) if _fits_indented(value) else _quote(value)
    if isinstance(value, Mapping):
        if not value:
            return "{ }"
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise ValidationError(f"attribute names must be strings, not {type(key).__name__}")
        lines = ["{"]
        for key in sorted(keys):
            lines.append(f"{INDENT * (depth + 1)}{render_key(key)} = {render_value(value[key], depth + 1)};")
        lines.append(INDENT * depth + "}")
        return "\n".join(lines)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[ ]"
        items = [render_value(item, depth + 1) for item in value]
        inline = "[ " + " ".join(items) + " ]"
        if all("\n" not in item for item in items) and len(inline) + len(INDENT) * depth <= INLINE_LIST_WIDTH:
            return inline
        return "[\n" + "\n".join(INDENT * (depth + 1) + item for item in items) + "\n" + INDENT * depth + "]"
    raise ValidationError(f"cannot write a {type(value).__name__} value into a NixOS fragment")


def render_fragment(value: Mapping[str, NixValue], *, meta: Mapping[str, str] | None = None) -> str:
    """The full text of a fragment file: a header comment, then the attrset.

    The header is the same whichever screen or command wrote the fragment, so writing the same
    value again is a no-op with an empty diff.

    `meta` becomes `# hyperconsole-<key>: <value>` header lines that `read_meta` gives back (the
    security profile records its name and toggles this way, since a NixOS module has no place
    for extra data). Keys and values must be single-line and are checked here.
    """
    if not isinstance(value, Mapping):
        raise ValidationError("a fragment must be an attribute set (a mapping)")
    lines = ["# Generated by hyperconsole. Edits here are overwritten; change it from hyperconsole."]
    for key in sorted(meta or {}):
        text = (meta or {})[key]
        if not _META_KEY.match(key):
            raise ValidationError(f"header key {key!r} must be lower-case letters, digits and '-'")
        if not isinstance(text, str) or not text.isprintable():  # also refuses line breaks and NUL
            raise ValidationError(f"header {key} must be one line of printable text")
        lines.append(f"{HEADER_PREFIX}{key}: {text}")
    return "\n".join(lines) + "\n" + render_value(value) + "\n"


def read_meta(text: str) -> dict[str, str]:
    """The `# hyperconsole-<key>: <value>` lines of a fragment's leading comment block."""
    meta: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(HEADER_PREFIX) and ": " in line:
            key, _, val = line[len(HEADER_PREFIX):].partition(": ")
            meta[key] = val
    return meta


# ---------------------------------------------------------------------------------------------
# Reader for the subset above (plus comments, dotted keys and `"…" + "…"`-free plain data).

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*|/\*.*?\*/)
  | (?P<int>[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_'-]*)
  | (?P<dq>")
  | (?P<ind>'')
  | (?P<punct>[{}\[\]=;().-])
    """,
    re.VERBOSE | re.DOTALL,
)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> NixSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        return NixSyntaxError(f"line {line}: {message}")

    def skip(self) -> None:
        while self.pos < len(self.text):
            m = _TOKEN.match(self.text, self.pos)
            if m and m.lastgroup in ("ws", "comment"):
                self.pos = m.end()
            else:
                if self.text.startswith("/*", self.pos):
                    raise self.error("unterminated comment")
                return

    def peek(self) -> tuple[str, str] | None:
        self.skip()
        if self.pos >= len(self.text):
            return None
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            raise self.error(f"unexpected character {self.text[self.pos]!r}")
        return m.lastgroup or "", m.group()

    def expect(self, symbol: str) -> None:
        tok = self.peek()
        if tok != ("punct", symbol):
            raise self.error(f"expected {symbol!r}")
        self.pos += 1

    def value(self) -> NixValue:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of text")
        kind, text = tok
        if kind == "int":
            self.pos += len(text)
            return self._int(int(text))
        if kind == "ident":
            self.pos += len(text)
            if text in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[text]
            raise self.error(f"{text!r} is not a plain value (only data is supported, no expressions)")
        if kind == "dq":
            return self.dq_string()
        if kind == "ind":
            return self.indented_string()
        if text == "(":
            self.pos += 1
            inner = self.value()
            self.expect(")")
            return inner
        if text == "-":
            self.pos += 1
            tok = self.peek()
            if tok is None or tok[0] != "int":
                raise self.error("'-' must be followed by an integer")
            self.pos += len(tok[1])
            return self._int(-int(tok[1]))
        if text == "{":
            return self.attrset()
        if text == "[":
            self.pos += 1
            items = []
            while self.peek() != ("punct", "]"):
                if self.peek() is None:
                    raise self.error("unterminated list")
                items.append(self.value())
            self.pos += 1
            return items
        raise self.error(f"unexpected {text!r}")

    def _int(self, number: int) -> int:
        if not INT_MIN - 1 <= number <= INT_MAX:
            raise self.error("integer out of range")
        return number

    def key(self) -> str:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of text in attribute name")
        kind, text = tok
        if kind == "ident":
            self.pos += len(text)
            return text
        if kind == "dq":
            return self.dq_string()
        raise self.error(f"expected an attribute name, found {text!r}")

    def attrset(self) -> dict[str, NixValue]:
        self.expect("{")
        result: dict[str, NixValue] = {}
        while self.peek() != ("punct", "}"):
            if self.peek() is None:
                raise self.error("unterminated attribute set")
            path = [self.key()]
            while self.peek() == ("punct", "."):
                self.pos += 1
                path.append(self.key())
            self.expect("=")
            item = self.value()
            self.expect(";")
            target = result
            for part in path[:-1]:
                nested = target.setdefault(part, {})
                if not isinstance(nested, dict):
                    raise self.error(f"attribute {'.'.join(path)!r} is defined twice")
                target = nested
            if path[-1] in target:
                raise self.error(f"attribute {'.'.join(path)!r} is defined twice")
            target[path[-1]] = item
        self.pos += 1
        return result

    def dq_string(self) -> str:
        self.pos += 1  # opening quote
        out = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated string")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                if self.pos + 1 >= len(text):
                    raise self.error("unterminated string")
                nxt = text[self.pos + 1]
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                self.pos += 2
                continue
            if ch == "$" and text.startswith("${", self.pos):
                raise self.error("string interpolation (${…}) is not supported")
            if ch == "$" and text.startswith("$${", self.pos):
                # Nix reads `$${` as a literal `$$` followed by `{`.
                out.append("$${")
                self.pos += 3
                continue
            out.append(ch)
            self.pos += 1

    def indented_string(self) -> str:
        self.pos += 2
        text = self.text
        # Raw pieces: ("lit", text) keep their characters as typed (subject to indentation
        # stripping); ("esc", text) come from escapes and are never stripped.
        pieces: list[tuple[str, str]] = []
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated indented string")
            if text.startswith("'''", self.pos):
                pieces.append(("esc", "''"))
                self.pos += 3
            elif text.startswith("''$", self.pos):
                pieces.append(("esc", "$"))
                self.pos += 3
            elif text.startswith("''\\", self.pos):
                if self.pos + 3 >= len(text):
                    raise self.error("unterminated indented string")
                nxt = text[self.pos + 3]
                pieces.append(("esc", {"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt)))
                self.pos += 4
            elif text.startswith("''", self.pos):
                self.pos += 2
                break
            elif text.startswith("${", self.pos):
                raise self.error("string interpolation (${…}) is not supported")
            else:
                pieces.append(("lit", text[self.pos]))
                self.pos += 1
        return _strip_indentation(pieces)


def _strip_indentation(pieces: list[tuple[str, str]]) -> str:
    """Nix's rule: remove the smallest indentation (spaces) of the non-blank lines, drop the first
    line if it is only spaces and the last line if it is only spaces."""
    # Split into lines of pieces.
    lines: list[list[tuple[str, str]]] = [[]]
    for kind, chunk in pieces:
        if kind == "lit" and chunk == "\n":
            lines[-1].append((kind, chunk))
            lines.append([])
        else:
            lines[-1].append((kind, chunk))

    def leading_spaces(line: list[tuple[str, str]]) -> int | None:
        count = 0
        for kind, chunk in line:
            if kind == "lit" and chunk == " ":
                count += 1
                continue
            if kind == "lit" and chunk == "\n":
                return None  # blank line: ignored for the minimum
            return count
        return None

    indents = [n for n in (leading_spaces(line) for line in lines) if n is not None]
    strip = min(indents) if indents else 0
    if lines and all(k == "lit" and c in " \n" for k, c in lines[0]) and any(c == "\n" for _, c in lines[0]):
        lines = lines[1:]
    if lines and all(k == "lit" and c == " " for k, c in lines[-1]):
        lines[-1] = []
    out = []
    for line in lines:
        removed = 0
        for kind, chunk in line:
            if kind == "lit" and chunk == " " and removed < strip:
                removed += 1
                continue
            removed = strip
            out.append(chunk)
    return "".join(out)


def parse(text: str) -> NixValue:
    """Read back a value written by `render_value`/`render_fragment` (comments are skipped).

    Raises NixSyntaxError (a ValidationError) naming the line for anything outside the subset:
    functions, `let`, interpolation, operators. Hand-edited fragments that use those are
    reported, never half-read.
    """
    reader = _Reader(text)
    value = reader.value()
    if reader.peek() is not None:
        raise reader.error("unexpected text after the value")
    return value
