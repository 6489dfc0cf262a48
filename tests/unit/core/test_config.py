from __future__ import annotations

import pytest

from hyperconsole import config
from hyperconsole.errors import ConfigError


def test_user_file_overrides_system_file(tmp_path):
    system = tmp_path / "system.yaml"
    user = tmp_path / "user.yaml"
    system.write_text("refresh: 5\nconnections: {lab: 'qemu+ssh://lab/system'}\n")
    user.write_text("refresh: 1.5\nkeymap: {vms.start: S}\n")
    cfg = config.load([system, user])
    assert cfg.refresh == 1.5
    assert cfg.connections["lab"] == "qemu+ssh://lab/system"
    assert cfg.keymap == {"vms.start": "S"}
    assert cfg.uri == "qemu:///system"


@pytest.mark.parametrize("text, needle", [
    ("refresh: [1", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("refresh: 0\n", "between 0.2 and 3600"),
    ("refresh: fast\n", "number of seconds"),
    ("colour: red\n", "unknown key 'colour'"),
    ("default_connection: lab\n", "not in connections"),
    ("keymap: {vms.start: 3}\n", "keymap must be"),
])
def test_broken_config_is_one_clear_line(tmp_path, text, needle):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load([path])
    message = str(err.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_missing_files_give_defaults(tmp_path):
    cfg = config.load([tmp_path / "none.yaml"])
    assert cfg.refresh == 2.0 and cfg.sources == ()
