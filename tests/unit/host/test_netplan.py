"""netplan.plan, the one planning step of the net commands and the Networks pane, against a
stand-in `ip` that fails or hangs: the uplink is then unknown, and every change that touches an
interface is treated as touching it."""

from __future__ import annotations

import pytest

from hyperconsole.errors import ValidationError
from hyperconsole.host import interfaces, netconfig, netplan
from hyperconsole.nixos.store import FragmentStore


@pytest.mark.parametrize("broken", ["fails", "hangs", "route lookup fails"])
def test_unreadable_host_means_every_touched_interface_may_be_the_uplink(fake_ip, monkeypatch, nixos_dir, broken):
    if broken == "fails":
        fake_ip("echo 'Cannot send dump request: Operation not permitted' >&2\nexit 1\n")
    elif broken == "hangs":
        fake_ip("exec sleep 30\n")
        monkeypatch.setattr(interfaces, "IP_TIMEOUT", 0.5)
    else:
        # Links and default routes answer; the route back to the SSH client does not.
        fake_ip("""\
            case "$*" in
              *"route get"*) echo 'RTNETLINK answers: Invalid argument' >&2; exit 2 ;;
              *) echo '[]' ;;
            esac
            """)
        monkeypatch.setenv("SSH_CONNECTION", "203.0.113.9 40000 203.0.113.1 22")
    store = FragmentStore(nixos_dir)
    for edit in (lambda cfg, ex: netconfig.set_mtu(cfg, "eth3", 1400, existing=ex),
                 lambda cfg, ex: netconfig.set_address(cfg, "eth3", dhcp=True, existing=ex),
                 lambda cfg, ex: netconfig.set_address(cfg, "eth3", address="192.0.2.3/24", existing=ex)):
        planned = netplan.plan(store, edit)
        assert planned.uplink.known is False and planned.impact.uplinks_touched == ["eth3"]
        assert planned.timeout(None, 0) == netplan.UPLINK_FALLBACK_TIMEOUT  # configured 0: still a window
        assert planned.timeout(None, 45) == 45
        with pytest.raises(ValidationError, match="eth3 may be the host's uplink"):
            planned.timeout(0, 45)
    dns = netplan.plan(store, lambda cfg, ex: netconfig.set_nameservers(cfg, ["192.0.2.53"], existing=ex))
    assert not dns.touches_uplink and dns.timeout(0, 45) == 0  # nameservers touch no interface
