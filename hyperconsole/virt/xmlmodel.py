"""libvirt XML read and written through one declarative field mapping (virtinst's XMLProperty).

A model is a frozen dataclass whose fields say where they live in the XML::

    @dataclass(frozen=True)
    class Volume:
        name: str = xml("./name")
        format: str = xml("./target/format/@type")
        capacity: int = xml("./capacity", size=True)

`read(Volume, root)` parses, `build(volume, "volume")` writes: the same declaration serves both,
and `build` emits elements in field order, so the same model always gives the same bytes
(checked against golden files). Values are element text or attribute values, escaped by
ElementTree; nothing is concatenated into XML.

`parse` is the one entry for XML that libvirt hands back. libvirt stores what it is given, so a
description set through the API with ESC or another character XML 1.0 forbids comes back as a
document no XML parser accepts; such characters are made visible (`\\x1b`) and the rest reads
normally, so one hostile description never hides a VM, a network's users or a volume's.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import xml.etree.ElementTree as ET
from typing import Any, TypeVar

from hyperconsole.errors import ValidationError

# Keep well-known prefixes when an edited XML is written back (ElementTree would say ns0:).
for _prefix, _uri in (
    ("qemu", "http://libvirt.org/schemas/domain/qemu/1.0"),
    ("test", "http://libvirt.org/schemas/domain/test/1.0"),
    ("libosinfo", "http://libosinfo.org/xmlns/libvirt/domain/1.0"),
):
    ET.register_namespace(_prefix, _uri)

# Characters XML 1.0 does not allow anywhere, not even as character references.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def visible(text: str) -> str:
    """Each character XML 1.0 forbids as `\\xNN` (`\\uNNNN` above 0xff)."""
    return _FORBIDDEN.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                          else f"\\u{ord(m.group()):04x}", text)


def parse(text: str, what: str = "libvirt", notes: list[str] | None = None) -> ET.Element:
    """XML text → element tree, tolerating characters XML 1.0 forbids (made visible; a line
    saying so is appended to `notes`). Raises ValidationError("<what> XML does not parse: …")
    for anything else."""
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        repaired = visible(text)
        if repaired != text:
            try:
                root = ET.fromstring(repaired)
            except ET.ParseError:
                pass
            else:
                if notes is not None:
                    shown = sorted({visible(ch) for ch in _FORBIDDEN.findall(text)})
                    notes.append(f"its {what} XML holds characters XML does not allow, shown as {' '.join(shown)}")
                return root
        raise ValidationError(f"{what} XML does not parse: {exc}") from exc


def to_string(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- fields

UNITS = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
          "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "t": 1024**4, "tib": 1024**4,
          "tb": 1000**4, "p": 1024**5, "pib": 1024**5, "pb": 1000**5}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    element: str  # "." for the root itself, else an ElementTree path of plain tags
    attr: str  # "" for the element's text
    kind: type  # str, int or bool, from the dataclass annotation
    default: Any
    size: bool
    flag: bool


def xml(xpath: str, default: Any = "", *, size: bool = False, flag: bool = False) -> Any:
    """A dataclass field stored at `xpath` ('./name', './target/path', './source/@pool', './@type').

    size: a byte count written as text with unit='bytes' and read in whatever unit it has.
    flag: a bool that is the presence of an empty element ('./readonly').
    An attribute of type bool reads and writes 'yes'/'no'."""
    return dataclasses.field(default=default, metadata={"xpath": xpath, "size": size, "flag": flag})


@functools.cache
def _fields(cls: type) -> tuple[_Field, ...]:
    """The declared fields of a model, in declaration order (worked out once per class)."""
    out = []
    for f in dataclasses.fields(cls):
        if "xpath" not in f.metadata:
            continue
        xpath = f.metadata["xpath"]
        head, sep, attr = xpath.rpartition("/@")
        element = (head or ".") if sep else xpath
        declared = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        kind = {"int": int, "bool": bool}.get(declared.replace(" | None", ""), str)
        out.append(_Field(f.name, element, attr if sep else "", kind, f.default, f.metadata["size"], f.metadata["flag"]))
    return tuple(out)


def _convert(f: _Field, el: ET.Element, raw: str) -> Any:
    if f.size:
        return int(raw) * UNITS.get((el.get("unit") or "bytes").lower(), 1)
    if f.kind is bool:
        return raw in ("yes", "on", "1")
    if f.kind is int:
        return int(raw)
    return raw


T = TypeVar("T")


def read(cls: type[T], root: ET.Element, **given: Any) -> T:
    """An instance of `cls` from `root`: each declared field from its XPath (its default when
    absent or not a number where a number is declared), the others from `given`."""
    values: dict[str, Any] = {}
    for f in _fields(cls):
        if f.name in given:
            continue
        el = root if f.element == "." else root.find(f.element)
        if f.flag:
            values[f.name] = el is not None
            continue
        raw = None if el is None else el.get(f.attr) if f.attr else el.text
        if raw is None:
            continue
        try:
            values[f.name] = _convert(f, el, raw)
        except ValueError:
            continue
    return cls(**values, **given)


def _ensure(root: ET.Element, path: str) -> ET.Element:
    el = root
    if path == ".":
        return el
    for tag in path.removeprefix("./").split("/"):
        child = el.find(tag)
        el = child if child is not None else ET.SubElement(el, tag)
    return el


def write(obj: Any, root: ET.Element) -> ET.Element:
    """Set every declared field of `obj` that has a value into `root`, in field order, creating
    the elements on its path; empty values ('', None, and a falsy default such as 0 or False)
    are left out."""
    for f in _fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None or value == "" or (not value and value == f.default):
            continue
        el = _ensure(root, f.element)
        if f.flag:
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        else:
            text = str(value)
        if f.attr:
            el.set(f.attr, text)
        else:
            el.text = text
            if f.size:
                el.set("unit", "bytes")
    return root


def build(obj: Any, tag: str, **attrs: str) -> str:
    """A new document `<tag>` holding `obj`'s fields (deterministic: field order)."""
    return to_string(write(obj, ET.Element(tag, attrs)))
