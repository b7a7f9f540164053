"""End to end: the footctl CLI in a subprocess against virtual massagers.

In-process (``--simulate``) for one-shot commands; a ``footctl sim`` process plus
``--link`` for the guardian, link drops and signals, so the test can look at what
the device was left doing after the controller process is gone.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from cli_rig import CLI_TIMEOUT_S, FAST_RAMP, footctl, one_json, start_owner, use_config, wait_until
from footctl.virtual.sim import SimControl

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(autouse=True)
def _fast_ramp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)


SETS = {
    "ems-v2": (["--intensity", "7", "--heat", "2", "--mode", "tapping", "--zone", "3"],
               {"intensity": 7, "heat": 2, "mode": "tapping", "zone": 3}),
    "shiatsu-aa55": (["--intensity", "3", "--heat", "1", "--mode", "rolling"],
                     {"intensity": 3, "heat": 1, "mode": "rolling"}),
    "shiatsu-keys": (["--intensity", "4", "--heat", "1", "--mode", "air"],
                     {"intensity": 4, "heat": 1, "mode": "air"}),
}

OVER_CAP = {
    "ems-v2": (["--heat", "3"], "heat_above_cap"),  # 44 C > 42 C default cap
    "shiatsu-aa55": (["--intensity", "6"], "intensity_above_cap"),
    "shiatsu-keys": (["--intensity", "7"], "intensity_above_cap"),
}


@pytest.mark.parametrize("profile_id", sorted(SETS))
def test_set_reports_confirmed_state(profile_id: str) -> None:
    args, expected = SETS[profile_id]
    proc = footctl("--simulate", profile_id, "--json", "set", *args)
    assert proc.returncode == 0, proc.stderr
    data = one_json(proc)
    assert data["ok"] is True
    device = data["device"]
    assert device["reported"]["power"] is True
    assert device["link"] == "connected"
    assert device["assumed"] is False  # confirmed by a status notification
    for key, value in expected.items():
        assert device["reported"][key] == value, (key, device)


@pytest.mark.parametrize("profile_id", sorted(SETS))
def test_over_cap_request_is_refused_with_reason(profile_id: str) -> None:
    args, reason = OVER_CAP[profile_id]
    proc = footctl("--simulate", profile_id, "--json", "set", *args)
    assert proc.returncode == 4, proc.stderr
    data = one_json(proc)
    assert data["ok"] is False
    assert data["reason"] == reason
    assert "refused" in proc.stderr


@pytest.mark.parametrize("profile_id", sorted(SETS))
def test_stop_reports_everything_off(profile_id: str) -> None:
    proc = footctl("--simulate", profile_id, "--json", "stop")
    assert proc.returncode == 0, proc.stderr
    device = one_json(proc)["device"]
    assert device["reported"]["power"] is False
    assert device["reported"]["heat"] == 0


def test_acceptance_aa55_set_prints_intensity_and_heat() -> None:
    proc = footctl("--simulate", "shiatsu-aa55", "--json", "set", "--intensity", "3", "--heat", "1")
    assert proc.returncode == 0, proc.stderr
    device = one_json(proc)["device"]["reported"]
    assert (device["intensity"], device["heat"]) == (3, 1)


def test_profiles_json_lists_all_three() -> None:
    data = one_json(footctl("--json", "profiles", check=True))
    ids = {p["id"] for p in data["profiles"]}
    assert {"ems-v2", "shiatsu-aa55", "shiatsu-keys"} <= ids


def test_profile_check_names_file_and_field(tmp_path: Path) -> None:
    good = ROOT / "device_profiles" / "shiatsu-aa55.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("write_with_response", "write_with_respose"))
    past = tmp_path / "past.toml"
    past.write_text(good.read_text().replace('checksum = { preset = "xor8" }',
                                             'checksum = { preset = "xor8", start = 40 }'))
    assert footctl("profile", "check", str(good)).returncode == 0
    proc = footctl("profile", "check", str(bad))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "gatt.write_with_respose" in proc.stderr
    proc = footctl("profile", "check", str(past))
    assert proc.returncode == 2
    assert str(past) in proc.stderr and "checksum" in proc.stderr


def test_usage_errors_exit_2() -> None:
    assert footctl("--simulate", "shiatsu-aa55", "set").returncode == 2
    assert footctl("--simulate", "shiatsu-aa55", "set", "--intensity", "x").returncode == 2
    assert footctl("--simulate", "no-such-profile", "status").returncode == 2
    assert footctl("--simulate", "shiatsu-aa55", "set", "--mode", "tickle").returncode == 2


def test_unreachable_link_exits_3() -> None:
    proc = footctl("--link", "127.0.0.1:9", "status")
    assert proc.returncode == 3, proc.stderr


# --- a separate sim process, the guardian, link drops and signals ---------------


def device_state(ctl: SimControl) -> dict[str, Any]:
    return ctl.request({"cmd": "state"})


def test_guardian_holds_session_and_stop_from_elsewhere_ends_it(
    sim_aa55: tuple[str, SimControl],
) -> None:
    link, ctl = sim_aa55
    guardian = start_owner(link, "set", "--intensity", "2", "--heat", "1")
    try:
        assert guardian.stdout is not None
        first = json.loads(guardian.stdout.readline())
        assert first["device"]["reported"]["intensity"] == 2
        assert first["device"]["timers"]["heat_left_s"] > 0
        assert guardian.poll() is None  # still the owner
        # Another terminal: status and set go through the owner
        status = one_json(footctl("--link", link, "--json", "status", check=True))
        assert status["via"] == f"owner {guardian.pid}"
        changed = one_json(footctl("--link", link, "--json", "set", "--intensity", "4", check=True))
        assert changed["device"]["reported"]["intensity"] == 4
        assert device_state(ctl)["intensity"] == 4
        stopped = one_json(footctl("--link", link, "--json", "stop", check=True))
        assert stopped["device"]["reported"]["power"] is False
        assert guardian.wait(timeout=CLI_TIMEOUT_S) == 0
    finally:
        if guardian.poll() is None:
            guardian.kill()
    state = device_state(ctl)
    assert state["running"] is False and state["heat"] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_turns_everything_off_before_exit(
    sim_aa55: tuple[str, SimControl], sig: signal.Signals
) -> None:
    link, ctl = sim_aa55
    guardian = start_owner(link, "set", "--intensity", "3", "--heat", "1")
    assert guardian.stdout is not None
    guardian.stdout.readline()
    assert device_state(ctl)["heat"] == 1
    guardian.send_signal(sig)
    code = guardian.wait(timeout=CLI_TIMEOUT_S)
    assert code == 128 + sig
    state = device_state(ctl)
    assert state["running"] is False
    assert state["heat"] == 0


def test_link_drop_then_reboot_ends_the_session_and_stays_off(
    sim_aa55: tuple[str, SimControl],
) -> None:
    """The massager rebooted while away and comes back off: the session ends
    (``device_off``) and nothing switches it on again (issue #9, 1: it was re-asserted)."""
    link, ctl = sim_aa55
    guardian = start_owner(link, "set", "--intensity", "3", "--mode", "rolling")
    try:
        assert guardian.stdout is not None
        guardian.stdout.readline()
        ctl.request({"cmd": "drop"})
        wait_until(lambda: not device_state(ctl)["connected"], what="link down")
        ctl.request({"cmd": "reboot"})  # the massager lost its state while away
        assert device_state(ctl)["running"] is False
        ctl.request({"cmd": "restore"})
        wait_until(lambda: guardian.poll() is not None, what="the session to end")
        assert device_state(ctl)["running"] is False
    finally:
        if guardian.poll() is None:
            guardian.send_signal(signal.SIGTERM)
        guardian.wait(timeout=CLI_TIMEOUT_S)
    assert device_state(ctl)["running"] is False


def test_sigkill_leaves_a_marker_and_the_next_start_turns_the_device_off(
    sim_aa55: tuple[str, SimControl],
) -> None:
    link, ctl = sim_aa55
    guardian = start_owner(link, "set", "--intensity", "2", "--heat", "1")
    assert guardian.stdout is not None
    guardian.stdout.readline()
    guardian.kill()  # no chance to clean up
    guardian.wait(timeout=CLI_TIMEOUT_S)
    wait_until(lambda: not device_state(ctl)["connected"], what="the sim to see the crash")
    state = device_state(ctl)
    assert state["running"] is True and state["heat"] == 1  # left on by the crash
    proc = footctl("--link", link, "--json", "status")
    assert proc.returncode == 0, proc.stderr
    assert "died" in proc.stderr
    state = device_state(ctl)
    assert state["running"] is False and state["heat"] == 0
    # the marker is gone: the next start does not recover again
    assert "died" not in footctl("--link", link, "status").stderr
