"""Reading the console's YAML files through one schema library (msgspec).

Config, profiles and toggles are loaded with `load_yaml` (safe YAML; an anchor that refers to
itself is one error, not a recursion) and checked with `convert` against msgspec types, so every
problem is one line that names the file and the exact place: `config.yaml: at $.refresh: …`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from hyperconsole.errors import ConfigError

T = TypeVar("T")
_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_FIELD = re.compile(r"`([^`]*)`")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses an alias to a collection still being built (`a: &x [*x]`), which
    would otherwise give a structure that contains itself and a RecursionError in whatever walks
    it. A sequence or mapping node has no end mark until its last child is composed."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if isinstance(node, yaml.CollectionNode) and node.end_mark is None:
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{event.anchor} refers to a node that contains it",
                    event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(path: Path) -> Any:
    """The YAML document in `path` (None when empty); ConfigError with file and line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from exc
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if problem and "refers to a node" in problem else ""
        raise ConfigError(f"{path}:{line} is not valid YAML{detail}") from exc
    except RecursionError as exc:  # nesting deeper than the parser can follow
        raise ConfigError(f"{path}: nested too deeply") from exc
    finally:
        loader.dispose()


def load_mapping(path: Path, *, empty_ok: bool = False,
                 expected: str = "the top level must be a mapping") -> dict | None:
    """load_yaml for files whose top level is a mapping (None for an empty file if `empty_ok`)."""
    data = load_yaml(path)
    if data is None and empty_ok:
        return None
    if not isinstance(data, dict):
        raise problem(path, "$", expected)
    return data


def problem(where: object, path: str, message: str, hint: str | None = None) -> ConfigError:
    """The one shape of every schema error: `<file>: at <path>: <message>`."""
    return ConfigError(f"{where}: at {path}: {message}", hint=hint)


def convert(data: Any, kind: type[T], where: object, at: str = "$") -> T:
    """`data` as `kind`, or ConfigError naming `where` and the path (`at` prefixes it)."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None
        path = at + (m.group("path") or "$")[1:]
        message = m.group("message")
        field = _FIELD.search(message)
        if message.startswith("Object contains unknown field") and field:
            known = ", ".join(getattr(kind, "__struct_fields__", ())) if path == at else None
            raise problem(where, path, f"unknown key {field.group(1)!r}",
                          hint=f"known keys: {known}" if known else None) from None
        if message.startswith("Object missing required field") and field:
            raise problem(where, path, f"missing key {field.group(1)!r}") from None
        if r"matching regex '\\S'" in message:  # the pattern of non-blank text fields
            message = "Expected text that is not blank"
        raise problem(where, path, message[:1].lower() + message[1:].replace("`", "")) from None
