"""Backup tests use the real restic on a local repository: FAIL when missing in CI, skip elsewhere."""

from __future__ import annotations

import os

import pytest

from tests.backup_local import restic_env_ok
from tests.conftest import in_ci


@pytest.fixture
def restic_bin():
    if not restic_env_ok():
        if in_ci():
            pytest.fail("restic is not installed, and CI must run the backup tests")
        pytest.skip("restic is not installed")
    return "restic"


@pytest.fixture
def repo(restic_bin, tmp_path):
    from hyperconsole.backup.restic import Repository

    password = tmp_path / "restic.pw"
    password.write_text("correct horse battery staple\n")
    os.chmod(password, 0o600)
    repository = Repository(str(tmp_path / "repo"), str(password), cache_dir=str(tmp_path / "cache"))
    repository.init()
    return repository
