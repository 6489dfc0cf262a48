"""The admin's password, hashed before anything keeps it, and the file NixOS reads it from.

NixOS's `users.users.<name>.hashedPasswordFile` is a path read at each activation holding one
line `chpasswd -e` accepts (crypt text: `$y$` yescrypt or `$6$` SHA-512). Writing the hash to a
root-only file rather than `hashedPassword` keeps it out of the world-readable Nix store.
The clear password goes to `mkpasswd` on its stdin (never argv); without mkpasswd, SHA-512 crypt
(Drepper's specification, what glibc's crypt() computes) is done here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from hyperconsole import safefs
from hyperconsole.errors import ValidationError

SECRETS_DIR = Path("/var/lib/hyperconsole/secrets")
ROUNDS = 5000  # glibc's default for $6$ without rounds=
_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CRYPT = re.compile(r"\$(6|y|5)\$[^\s:]+\Z")
MIN_PASSWORD = 8


def _b64(data: bytes, order: list[tuple[int, int, int]], tail: tuple[int, ...]) -> str:
    out = []
    for a, b, c in order:
        value = (data[a] << 16) | (data[b] << 8) | data[c]
        for _ in range(4):
            out.append(_B64[value & 0x3F])
            value >>= 6
    value, count = 0, 0
    for shift, index in enumerate(tail):
        value |= data[index] << (8 * shift)
    count = {1: 2, 2: 3}[len(tail)]
    for _ in range(count):
        out.append(_B64[value & 0x3F])
        value >>= 6
    return "".join(out)


_ORDER = [(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
          (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
          (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41)]


def sha512_crypt(password: str, salt: str) -> str:
    """`$6$salt$hash` exactly as glibc's crypt() gives it (default rounds)."""
    pw, s = password.encode("utf-8"), salt.encode("ascii")[:16]
    h = hashlib.sha512
    b = h(pw + s + pw).digest()
    a = h(pw + s)
    n = len(pw)
    while n > 64:
        a.update(b)
        n -= 64
    a.update(b[:n])
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    digest = a.digest()
    dp = h(pw * len(pw)).digest()
    p = (dp * (len(pw) // 64 + 1))[:len(pw)]
    ds = h(s * (16 + digest[0])).digest()
    sb = (ds * (len(s) // 64 + 1))[:len(s)]
    for i in range(ROUNDS):
        c = h()
        c.update(p if i & 1 else digest)
        if i % 3:
            c.update(sb)
        if i % 7:
            c.update(p)
        c.update(digest if i & 1 else p)
        digest = c.digest()
    return f"$6${s.decode()}${_b64(digest, _ORDER, (63,))}"


def hash_password(password: str, *, mkpasswd: str | None = None) -> str:
    """Crypt text for `password`: yescrypt through mkpasswd when installed, else SHA-512 crypt."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(f"the password must have at least {MIN_PASSWORD} characters")
    if "\n" in password or "\x00" in password:
        raise ValidationError("the password may not contain a line break")
    tool = mkpasswd if mkpasswd is not None else shutil.which("mkpasswd")
    if tool:
        try:
            done = subprocess.run([tool, "--method=yescrypt", "--stdin"], input=password + "\n", text=True,
                                  capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and _CRYPT.match(done.stdout.strip()):
            return done.stdout.strip()
    salt = "".join(secrets.choice(_B64) for _ in range(16))
    return sha512_crypt(password, salt)


def check_hash(text: object) -> str:
    """A crypt hash NixOS accepts for a password file (`$6$…`, `$y$…`, `$5$…`), one line."""
    if not isinstance(text, str) or not _CRYPT.match(text):
        raise ValidationError("password_hash must be crypt text such as $6$salt$hash or $y$…",
                              hint="make one with `mkpasswd -m yescrypt`; a clear password is never accepted")
    return text


def password_file(secrets_dir: Path, user: str) -> Path:
    return secrets_dir / f"{user}.hashedPassword"


def write_password_file(secrets_dir: Path, user: str, crypt_text: str) -> Path:
    """The hash in a 0600 file in a 0700 directory (no link followed), for hashedPasswordFile."""
    check_hash(crypt_text)
    safefs.ensure_private_dir(secrets_dir)
    path = password_file(secrets_dir, user)
    safefs.atomic_write(path, (crypt_text + "\n").encode("ascii"), mode=safefs.PRIVATE_FILE_MODE)
    return path
