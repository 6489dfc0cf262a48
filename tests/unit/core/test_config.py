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
    ("refresh: 0\n", "at $.refresh: expected float >= 0.2"),
    ("refresh: fast\n", "at $.refresh: expected float, got str"),
    ("colour: red\n", "at $: unknown key 'colour'"),
    ("default_connection: lab\n", "at $.default_connection: 'lab' is not in connections"),
    ("refresh: .nan\n", "at $.refresh"),
    ("confirm_timeout: 1.5\n", "at $.confirm_timeout: expected int, got float"),
    ("connections: {lab: ''}\n", "at $.connections.lab: must be a non-empty string"),
    ("a: &x [*x]\n", "line 1 is not valid YAML: the alias *x refers to a node that contains it"),
    ("keymap: {vms.start: 3}\n", "at $.keymap.vms.start: must be a non-empty string"),
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
