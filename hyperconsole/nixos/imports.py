"""Whether the host's configuration imports the fragments, and adding the import to
configuration.nix (checked with the real nix-instantiate before the file is replaced). Used by
`nixos status --add-import`, the setup wizard's preflight and the doctor (check and fix)."""

from __future__ import annotations

import difflib
import os
import re
import stat
import subprocess
from pathlib import Path

from hyperconsole import safefs
from hyperconsole.errors import HyperconsoleError, ValidationError
from hyperconsole.nixos import nixeval
from hyperconsole.nixos.store import FRAGMENTS_SUBDIR, FragmentStore

_IMPORT_RE = re.compile(r"(?<![\w/.-])\./hyperconsole(?:/default\.nix)?(?![\w/.-])")
CONFIG_FILES = ("configuration.nix", "flake.nix")


def importing_files(nixos_dir: Path) -> dict[str, bool]:
    """{file name: imports ./hyperconsole} for the configuration files the NixOS dir has."""
    found = {}
    for name in CONFIG_FILES:
        path = nixos_dir / name
        if path.is_file():
            found[name] = imports_fragments(path.read_text(encoding="utf-8", errors="replace"))
    return found


def imports_fragments(text: str) -> bool:
    """Whether Nix text (comments ignored) mentions ./hyperconsole as a path."""
    without_comments = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    without_comments = "\n".join(line.split("#", 1)[0] for line in without_comments.splitlines())
    return bool(_IMPORT_RE.search(without_comments))


def add_import(text: str) -> str:
    """configuration.nix with `./hyperconsole` added to its imports; raises when the file's shape
    is not one we can edit safely (the operator then adds the line by hand)."""
    match = re.search(r"\bimports\s*=\s*\[", text)
    if match:
        return text[: match.end()] + "\n    ./hyperconsole" + text[match.end():]
    match = re.search(r"\}\s*:\s*\{", text) or re.match(r"\s*(?:#[^\n]*\n\s*)*\{", text)
    if match:
        return text[: match.end()] + "\n  imports = [ ./hyperconsole ];" + text[match.end():]
    raise ValidationError("cannot find where to add the import", hint="add `imports = [ ./hyperconsole ];` by hand")


# How a configuration's imports are checked without nixpkgs: call the module with stub arguments
# and import every path it lists (a missing ./hyperconsole/default.nix fails here).
def _evaluates(nix: str, path: Path) -> subprocess.CompletedProcess:
    expr = (f"map (i: if builtins.isPath i then builtins.typeOf (import i) else \"other\") "
            f"(({nixeval.module_expr(path)}).imports or [ ])")
    return nixeval.run(nix, "--eval", "--strict", "--json", "-E", expr)


def _nix_error(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("error:")]
    return (lines[0] if lines else f"exit {done.returncode}").removeprefix("error:").strip()


def _check_configuration(nix: str, candidate: Path, current: Path) -> str:
    """Refuse a candidate configuration.nix that does not parse, or that no longer evaluates
    where the current one does (with stub arguments; a full NixOS evaluation needs nixpkgs)."""
    parsed = nixeval.run(nix, "--parse", str(candidate))
    if parsed.returncode != 0:
        raise ValidationError(f"adding the import would break configuration.nix ({_nix_error(parsed)}); nothing changed",
                              hint="add `imports = [ ./hyperconsole ];` by hand")
    if _evaluates(nix, current).returncode != 0:
        return "checked with nix-instantiate --parse (the current file does not evaluate on its own)"
    evaluated = _evaluates(nix, candidate)
    if evaluated.returncode != 0:
        raise ValidationError(f"configuration.nix would not evaluate with the import ({_nix_error(evaluated)}); "
                              "nothing changed", hint="add `imports = [ ./hyperconsole ];` by hand")
    return "checked with nix-instantiate --parse and --eval"


def add_fragments_import(nixos_dir: Path, store: FragmentStore) -> tuple[str, str]:
    """Create the fragments dir with a valid default.nix, then add ./hyperconsole to
    configuration.nix, checked before the file is replaced (atomically, never through a link).
    Returns the diff and how it was checked; on refusal nothing is left changed or created."""
    configuration = nixos_dir / "configuration.nix"
    data = safefs.read_bytes(configuration)
    if data is None:
        raise HyperconsoleError(f"{configuration} does not exist", hint="with a flake, add ./hyperconsole to the host's modules by hand")
    try:
        old = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HyperconsoleError(f"{configuration} is not UTF-8 text; nothing changed") from None
    new = add_import(old)
    mode = stat.S_IMODE(os.lstat(configuration).st_mode)
    created = not os.path.lexists(store.dir)
    try:
        store.ensure_index()
        with safefs.Transaction(nixos_dir) as txn:
            candidate = txn.write(configuration.name, new.encode("utf-8"), mode)
            nix = nixeval.nix_instantiate()
            checked = _check_configuration(nix, candidate, configuration) if nix else "not checked (no nix-instantiate)"
            txn.commit()
    except BaseException:
        if created:
            safefs.remove_tree(nixos_dir, FRAGMENTS_SUBDIR)
        raise
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/configuration.nix", "b/configuration.nix"))
    return diff, checked
