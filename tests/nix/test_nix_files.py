"""Every .nix file in the repository parses with the real Nix parser; goldens match the renderer."""

from __future__ import annotations

import pytest

from hyperconsole import profiles
from hyperconsole.nixos.render import render_fragment

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("HYPERCONSOLE_REGEN_GOLDEN") == "1"

NIX_FILES = sorted(
    p for p in REPO.rglob("*.nix")
    if not any(part.startswith(".") or part in ("node_modules", "build", "dist") for part in p.relative_to(REPO).parts)
)

HOSTILE_VALUE = {
    "quotes": 'say "hi"',
    "backslashes": "C:\\path\\",
    "interpolation": "${builtins.abort \"x\"}",
    "indented-escape": "''${x}",
    "dollar": "$ $$ $$$",
    "whitespace": "tab\there\r\nnext",
    "unicode": "héllo 日本 🚀",
    "multi-line": "first line\n  indented\n\nlast\n",
    "not an identifier": {"with space": 1, "in": True, "1st": None, "a.b": [-1, 0, 9223372036854775807]},
}


def golden_cases() -> dict[str, str]:
    catalog = profiles.load_catalog([REPO / "profiles"])
    cases = {}
    for name in ("headless", "management"):
        cases[name] = profiles.render_profile_fragment(catalog, name)
        cases[f"{name}-all-toggles"] = profiles.render_profile_fragment(catalog, name, sorted(catalog.toggles))
    cases["hostile-values"] = render_fragment(HOSTILE_VALUE)
    return cases


def test_repository_has_the_expected_nix_files():
    names = {p.relative_to(REPO).as_posix() for p in NIX_FILES}
    assert {"flake.nix", "nix/package.nix", "nix/module.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_nix_file_parses(nix, path):
    done = nix.parse_file(path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", sorted(golden_cases()))
def test_golden_fragments(case):
    """Rendered output is stable; regenerate with HYPERCONSOLE_REGEN_GOLDEN=1 after a deliberate change."""
    text = golden_cases()[case]
    path = GOLDEN / f"{case}.nix"
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}; run with HYPERCONSOLE_REGEN_GOLDEN=1"
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("case", sorted(golden_cases()))
def test_golden_fragments_evaluate(nix, case, tmp_path):
    from hyperconsole.nixos.render import parse

    path = GOLDEN / f"{case}.nix"
    assert nix.eval_file(path) == parse(path.read_text(encoding="utf-8"))
