"""Security profiles and hardening toggles, loaded from YAML, rendered to one NixOS fragment.

Where they come from, later directories overriding earlier ones by name:
1. the shipped `profiles/` directory: `<repo>/profiles` in a source tree or editable install,
   else the `hyperconsole/profiles/` package-data copy of a built package (the Nix package and
   wheels copy the top-level directory there; `[tool.setuptools.package-data]` already lists
   `profiles/*.yaml`), or $HYPERCONSOLE_PROFILES_DIR when set (packagers can point it anywhere);
2. /etc/hyperconsole/profiles;
3. $XDG_CONFIG_HOME/hyperconsole/profiles.

Each `<name>.yaml` is a profile; `toggles.yaml` holds toggles. A file that fails validation is
reported (`<file>: at $.nixos.…: problem`) in `Catalog.problems` and skipped: a broken profile never
breaks the app. A profile or toggle that sets a clear-text password is refused: fragments end up in
the world-readable Nix store.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

import msgspec
from msgspec import Meta

from hyperconsole import paths, schema
from hyperconsole.errors import ConfigError, ValidationError

FRAGMENT_NAME = "security-profile"
TOGGLES_FILE = "toggles.yaml"
_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"  # profile and toggle names
_NAME = re.compile(_NAME_PATTERN)


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    nixos: dict[str, Any]
    console: dict[str, Any]
    source: Path
    # What members of the operators group may change through the request unit (see OPERATOR_AREAS).
    operators_may_change: tuple[str, ...] = ()

    @property
    def libvirt_access(self) -> str:
        return self.console.get("libvirt", "read-write")


@dataclass(frozen=True)
class Toggle:
    name: str
    summary: str
    nixos: dict[str, Any]
    source: Path


@dataclass(frozen=True)
class Catalog:
    profiles: dict[str, Profile]
    toggles: dict[str, Toggle]
    problems: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # profile file stem -> why it was skipped

    def profile(self, name: str) -> Profile:
        if name not in self.profiles and name in self.refused:
            raise ValidationError(f"security profile {name} is refused: {self.refused[name]}")
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ValidationError(f"no security profile named {_show(name)}", hint=f"known: {known}")
        return self.profiles[name]

    def toggle(self, name: str) -> Toggle:
        if name not in self.toggles:
            known = ", ".join(sorted(self.toggles)) or "none"
            raise ValidationError(f"no toggle named {_show(name)}", hint=f"known: {known}")
        return self.toggles[name]


@dataclass(frozen=True)
class Selection:
    """What the security fragment on disk says is applied."""

    profile: str
    toggles: tuple[str, ...]


def _show(name: object) -> str:
    return repr(name)[:60]


def shipped_dir() -> Path:
    override = os.environ.get("HYPERCONSOLE_PROFILES_DIR")
    if override:
        return Path(override)
    source_tree = Path(__file__).resolve().parent.parent / "profiles"
    if source_tree.is_dir():
        return source_tree
    return Path(__file__).resolve().parent / "profiles"


def search_dirs() -> list[Path]:
    return [shipped_dir(), paths.SYSTEM_CONFIG_DIR / "profiles", paths.user_config_dir() / "profiles"]


class _Console(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    libvirt: Literal["read-only", "read-write"] = "read-write"


_Name = Annotated[str, Meta(pattern=_NAME_PATTERN)]
# What a profile may let operators (no sudo) change through hyperconsole's request unit.
OPERATOR_AREAS = ("network", "profile", "rollback", "backups")
_Line = Annotated[str, Meta(pattern=r"\S")]


class _ProfileFile(msgspec.Struct, forbid_unknown_fields=True):
    name: _Name
    summary: _Line
    nixos: dict[str, Any]
    console: _Console = _Console()
    operators_may_change: list[Literal[OPERATOR_AREAS]] = []  # type: ignore[valid-type]


class _ToggleBody(msgspec.Struct, forbid_unknown_fields=True):
    summary: _Line
    nixos: dict[str, Any]


class _TogglesFile(msgspec.Struct, forbid_unknown_fields=True):
    toggles: dict[str, Any]


def _clear_text_password(key: str, value: Any) -> bool:
    """`password`, `initialPassword`, `rootPassword`, … holding text (not `hashedPassword`, not
    a boolean such as `wheelNeedsPassword`, not a `…PasswordFile` path)."""
    lower = key.lower()
    return isinstance(value, str) and lower.endswith("password") and "hashed" not in lower


def _check_nixos(value: Any, where: object, at: str) -> dict[str, Any]:
    """A nested mapping of NixOS options with values Nix can hold exactly, and no clear-text
    password: the fragment is copied into the Nix store, which every local user can read."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str) or not key:
                    raise schema.problem(where, f"{path}.{key}", "a key must be a non-empty string")
                if "\n" in key or "${" in key:
                    raise schema.problem(where, f"{path}.{_show(key)}", "a key may not contain a newline or ${")
                if _clear_text_password(key, child):
                    better = "hashedPasswordFile" if ".users.users." in f"{path}." else f"{key}File"
                    raise schema.problem(
                        where, f"{path}.{key}", "a clear-text password is refused: the Nix store is world-readable",
                        hint=f"set {better} to a file outside the store instead")
                walk(child, f"{path}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}[{index}]")
        elif isinstance(node, float):
            raise schema.problem(where, path, "a floating-point number; use an integer or a string")
        elif node is not None and not isinstance(node, (str, int, bool)):
            raise schema.problem(where, path, f"unsupported value of type {type(node).__name__}")
        elif isinstance(node, str) and "\x00" in node:
            raise schema.problem(where, path, "contains a NUL character")

    if not value:
        raise schema.problem(where, at, "must be a non-empty mapping of NixOS options")
    walk(value, at)
    return copy.deepcopy(dict(value))


def load_profile(path: Path) -> Profile:
    file = schema.convert(schema.load_mapping(path), _ProfileFile, path)
    if file.name != path.stem:
        raise schema.problem(path, "$.name", f"is {file.name!r} but the file is {path.name}; they must match")
    if "\n" in file.summary.strip():
        raise schema.problem(path, "$.summary", "must be one line of text")
    return Profile(file.name, file.summary.strip(), _check_nixos(file.nixos, path, "$.nixos"),
                   {"libvirt": file.console.libvirt}, path, tuple(dict.fromkeys(file.operators_may_change)))


def load_toggles(path: Path) -> dict[str, Toggle]:
    file = schema.convert(schema.load_mapping(path, expected="the top level must be a mapping with one key 'toggles'"),
                          _TogglesFile, path)
    toggles = {}
    for name, body in file.toggles.items():
        at = f"$.toggles.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise schema.problem(path, at, "a toggle name is lower-case letters, digits and '-'")
        toggle = schema.convert(body, _ToggleBody, path, at)
        toggles[name] = Toggle(name, toggle.summary.strip(), _check_nixos(toggle.nixos, path, f"{at}.nixos"), path)
    return toggles


def load_catalog(dirs: Sequence[Path] | None = None) -> Catalog:
    """Every valid profile and toggle; problems are collected, never raised."""
    profiles: dict[str, Profile] = {}
    toggles: dict[str, Toggle] = {}
    problems: list[str] = []
    refused: dict[str, str] = {}
    for directory in search_dirs() if dirs is None else dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            try:
                if path.name == TOGGLES_FILE:
                    toggles.update(load_toggles(path))
                else:
                    profile = load_profile(path)
                    profiles[profile.name] = profile
                    refused.pop(profile.name, None)
            except ConfigError as exc:
                problems.append(str(exc))
                if path.name != TOGGLES_FILE:
                    refused[path.stem] = str(exc)
    return Catalog(profiles, toggles, problems, refused)


def merge_options(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge recursively, lists are joined without duplicates, other values replace."""
    result = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if key in result and isinstance(result[key], dict) and isinstance(value, Mapping):
            result[key] = merge_options(result[key], value)
        elif key in result and isinstance(result[key], list) and isinstance(value, list):
            result[key] = result[key] + [copy.deepcopy(v) for v in value if v not in result[key]]
        else:
            result[key] = copy.deepcopy(value)
    return result


def normalise_toggles(catalog: Catalog, toggles: Sequence[str]) -> tuple[str, ...]:
    """Known toggles, each once, in catalog (sorted) order so the output is deterministic."""
    for name in toggles:
        catalog.toggle(name)
    return tuple(sorted(set(toggles)))


def profile_options(catalog: Catalog, name: str, toggles: Sequence[str] = ()) -> dict[str, Any]:
    """The NixOS attrset for a profile with toggles applied."""
    options = copy.deepcopy(catalog.profile(name).nixos)
    for toggle in normalise_toggles(catalog, toggles):
        options = merge_options(options, catalog.toggles[toggle].nixos)
    return options


def profile_meta(name: str, toggles: Sequence[str]) -> dict[str, str]:
    return {"profile": name, "toggles": " ".join(toggles) if toggles else "none"}


def render_profile_fragment(catalog: Catalog, name: str, toggles: Sequence[str] = ()) -> str:
    from hyperconsole.nixos.render import render_fragment

    chosen = normalise_toggles(catalog, toggles)
    return render_fragment(profile_options(catalog, name, chosen), meta=profile_meta(name, chosen))


def current_selection(store) -> Selection | None:
    """Profile and toggles recorded in the security fragment's header, or None if not applied."""
    fragment = store.read(FRAGMENT_NAME)
    meta = fragment.meta()
    if "profile" not in meta:
        return None
    toggles = () if meta.get("toggles", "none") == "none" else tuple(meta["toggles"].split())
    return Selection(meta["profile"], toggles)


def applied_profile(store, catalog: Catalog | None = None) -> Profile | None:
    """The profile the security fragment on disk was written from, if it is still known."""
    selection = current_selection(store)
    if selection is None:
        return None
    return (catalog or load_catalog()).profiles.get(selection.profile)


def prepare_profile_change(store, catalog: Catalog, name: str, toggles: Sequence[str] = ()):
    """A ChangeSet writing the security fragment for this profile + toggles (nothing written yet)."""
    chosen = normalise_toggles(catalog, toggles)
    label = f"{name}" + (f" + {', '.join(chosen)}" if chosen else "")
    return store.prepare(
        {FRAGMENT_NAME: profile_options(catalog, name, chosen)},
        message=f"hyperconsole: security profile {label}",
        meta={FRAGMENT_NAME: profile_meta(name, chosen)},
    )
