"""Demo stand-in for nixos-rebuild: really evaluates every fragment with nix-instantiate.

    python -m hyperconsole.demo.rebuild --state DIR NIXOS_DIR ACTION [GENERATION]

ACTION is dry-build, test, switch, boot, rollback, or revert (what the revert timer runs; like
`switch-to-configuration test` of the current generation). Each fragment is parsed with
`nix-instantiate --parse` and evaluated with `--eval --strict --json` (called with stub module
arguments), so a fragment Nix rejects fails the demo rebuild with its `error:` lines. switch and
boot add a generation: a directory holding a copy of the evaluated fragments, linked as
`profiles/system-N-link` exactly like /nix/var/nix/profiles. `test` only activates (no new
generation), as nixos-rebuild does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from hyperconsole.errors import HyperconsoleError
from hyperconsole.nixos import nixeval
from hyperconsole.nixos.render import parse
from hyperconsole.nixos.store import FRAGMENTS_SUBDIR
from hyperconsole.safefs import atomic_write

NIX_TIMEOUT = 60


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def check_fragment(path: Path, nix: str | None) -> list[str]:
    """Return `error:` lines for this file (empty when it parses and evaluates)."""
    if nix is None:
        try:
            parse(path.read_text(encoding="utf-8"))
        except (HyperconsoleError, OSError, UnicodeDecodeError) as exc:
            return [f"error: {path.name}: {exc}"]
        return []
    steps = [["--parse", str(path)]]
    if path.name != "default.nix":  # evaluating imports would copy paths into the store
        steps.append(["--eval", "--strict", "--json", "-E", nixeval.module_expr(path.resolve())])
    for argv in steps:
        done = nixeval.run(nix, *argv, timeout=NIX_TIMEOUT)
        if done.returncode != 0:
            detail = [line for line in done.stderr.splitlines() if line.strip() and "build-users-group" not in line]
            errors = [line.strip() for line in detail if "error:" in line] or detail[:1] or [f"exit {done.returncode}"]
            return [f"error: {path.name}: {errors[0].removeprefix('error: ')}"] + [f"  {line}" for line in detail[1:6]]
    return []


class DemoSystem:
    """Generations of the demo "system": same layout as /nix/var/nix/profiles."""

    def __init__(self, root: Path, nixos_dir: Path) -> None:
        self.root = Path(root)
        self.nixos_dir = Path(nixos_dir)
        self.profiles = self.root / "profiles"
        self.store = self.root / "store"

    def generations(self) -> list[int]:
        if not self.profiles.is_dir():
            return []
        numbers = []
        for link in self.profiles.iterdir():
            name = link.name
            if name.startswith("system-") and name.endswith("-link") and name[7:-5].isdigit():
                numbers.append(int(name[7:-5]))
        return sorted(numbers)

    def current(self) -> int | None:
        try:
            return int(os.readlink(self.profiles / "system")[7:-5])
        except (OSError, ValueError):
            return None

    def _build(self) -> Path:
        """Copy the fragments and configuration into a content-addressed "store path"."""
        files = sorted((self.nixos_dir / FRAGMENTS_SUBDIR).glob("*.nix"))
        config = self.nixos_dir / "configuration.nix"
        if config.is_file():
            files.append(config)
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        out = self.store / f"{digest.hexdigest()[:32]}-demo-system"
        if not out.exists():
            self.store.mkdir(parents=True, exist_ok=True)
            staging = self.store / f".{out.name}.tmp{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for path in files:
                shutil.copy2(path, staging / path.name)
            os.rename(staging, out)
        return out

    def _set_link(self, link: Path, target: str) -> None:
        tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def _set_active(self, what: dict) -> None:
        atomic_write(self.root / "active.json", (json.dumps(what) + "\n").encode())
        # Like /run/current-system: the running system, whichever way it was activated.
        self._set_link(self.root / "current-system", what["path"])

    def active(self) -> dict | None:
        try:
            return json.loads((self.root / "active.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def new_generation(self, *, activate: bool) -> int:
        self.profiles.mkdir(parents=True, exist_ok=True)
        out = self._build()
        number = max(self.generations(), default=0) + 1
        self._set_link(self.profiles / f"system-{number}-link", str(out))
        self._set_link(self.profiles / "system", f"system-{number}-link")
        if activate:
            self._set_active({"generation": number, "path": str(out)})
        return number

    def test_build(self) -> Path:
        out = self._build()
        self._set_active({"generation": None, "path": str(out), "trial": True})
        return out

    def switch_to(self, number: int) -> None:
        link = self.profiles / f"system-{number}-link"
        self._set_link(self.profiles / "system", link.name)
        self._set_active({"generation": number, "path": os.path.realpath(link)})

    def reactivate_current(self) -> int | None:
        number = self.current()
        if number is not None:
            self._set_active({"generation": number, "path": os.path.realpath(self.profiles / f"system-{number}-link")})
        return number

    def set_booted_to_current(self) -> None:
        self._set_link(self.root / "booted-system", os.path.realpath(self.profiles / "system"))


def evaluate_all(nixos_dir: Path) -> bool:
    nix = nixeval.nix_instantiate()
    say("evaluating fragments with " + ("nix-instantiate" if nix else "hyperconsole's reader (nix-instantiate not installed)"))
    files = sorted((nixos_dir / FRAGMENTS_SUBDIR).glob("*.nix"))
    config = nixos_dir / "configuration.nix"
    if config.is_file():
        files.append(config)
    failures: list[str] = []
    for path in files:
        started = time.monotonic()
        if nix is None and (path.name == "default.nix" or path.parent == nixos_dir):
            # Our reader reads the data fragments we write, not hand-written Nix with functions/paths.
            say(f"{path.name}: skipped (needs nix-instantiate)")
            continue
        errors = check_fragment(path, nix)
        if errors:
            failures.extend(errors)
            say(f"{path.name}: FAILED")
        else:
            say(f"{path.name}: ok ({time.monotonic() - started:.2f}s)")
    for line in failures:
        print(line, flush=True)
    return not failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperconsole.demo.rebuild")
    parser.add_argument("--state", required=True, help="demo system dir (generations)")
    parser.add_argument("nixos_dir")
    parser.add_argument("action", choices=["dry-build", "test", "switch", "boot", "rollback", "revert"])
    parser.add_argument("generation", nargs="?", type=int)
    args = parser.parse_args(argv)
    nixos_dir = Path(args.nixos_dir)
    system = DemoSystem(Path(args.state), nixos_dir)
    say(f"{args.action} of {nixos_dir} (demo: fragments are evaluated, nothing is activated on this machine)")
    try:
        if args.action == "revert":
            number = system.reactivate_current()
            say(f"re-activated generation {number} (the configuration before the unconfirmed change)")
            return 0
        if args.action == "rollback":
            gens = system.generations()
            current = system.current()
            if args.generation is not None:
                target = args.generation
                if target not in gens:
                    print(f"error: there is no generation {target}", flush=True)
                    return 1
            else:
                older = [g for g in gens if current is not None and g < current]
                if not older:
                    print("error: no generation older than the current one to roll back to", flush=True)
                    return 1
                target = older[-1]
            system.switch_to(target)
            say(f"switched to generation {target}")
            return 0
        if not evaluate_all(nixos_dir):
            say(f"{args.action} failed")
            return 1
        if args.action == "dry-build":
            say("dry-build: everything evaluates; nothing to build in the demo")
        elif args.action == "test":
            out = system.test_build()
            say(f"activated {out.name} on trial (not added to the boot menu)")
        else:
            number = system.new_generation(activate=args.action == "switch")
            verb = "activated and made the default" if args.action == "switch" else "made the boot default"
            say(f"generation {number} {verb}")
        return 0
    except OSError as exc:
        print(f"error: demo state: {exc.strerror or exc}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
