"""The one-shot CLI path with real processes: a command that becomes the owner of its
massager is reachable by ``footctl stop`` from the moment it opens (while it connects
or ramps), a stop that misses a massager says so (exit 3), an unknown ``--device`` is
a name error, and two commands at once on one massager share its owner.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cli_rig import CLI_TIMEOUT_S, FAST_RAMP, footctl, one_json, use_config, wait_until
from test_control_cli import Procs, procs, state

pytestmark = pytest.mark.e2e

__all__ = ["procs"]  # the fixture, shared with test_control_cli

# The default ramp (one level every 10 s): a rise to 3 takes 20 s, the window in which
# a new user's stop went nowhere.
DEFAULT_RAMP = ""


def _first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    data = json.loads(proc.stdout.read())
    assert isinstance(data, dict)
    return data


def _listed(link: str) -> list[dict[str, Any]]:
    proc = footctl("--json", "--link", link, "status")
    return list(one_json(proc)["devices"]) if proc.returncode == 0 else []


def test_stop_from_anywhere_reaches_a_one_shot_set_while_it_ramps(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, DEFAULT_RAMP)
    link, ctl = procs.sim("shiatsu-aa55")
    setter = procs.start("--json", "--link", link, "--device", "shiatsu-aa55",
                         "set", "--intensity", "3", "--heat", "1")
    wait_until(lambda: state(ctl)["running"], what="the ramp's first step")
    assert state(ctl)["intensity"] < 3  # still ramping
    # status from elsewhere lists it while it ramps
    assert [v["profile"] for v in _listed(link)] == ["shiatsu-aa55"]
    stop = footctl("--json", "stop")
    assert stop.returncode == 0, stop.stderr
    assert [d["radio"] for d in one_json(stop)["devices"]] == [f"link {link}"]
    assert setter.wait(timeout=CLI_TIMEOUT_S) == 4
    assert _first_line(setter)["reason"] == "superseded_by_stop"
    assert not state(ctl)["running"] and state(ctl)["heat"] == 0


def test_stop_reaches_a_one_shot_set_while_it_connects(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)
    link, ctl = procs.sim("shiatsu-aa55")
    address = ctl.request({"cmd": "list"})["massagers"][0]["address"]
    ctl.request({"cmd": "drop"})
    setter = procs.start("--json", "--link", link, "--profile", "shiatsu-aa55",
                         "--device", address, "--scan-timeout", "25",
                         "set", "--intensity", "1", "--heat", "1")
    wait_until(lambda: [v["link"] for v in _listed(link)] == ["connecting"],
               what="the one-shot owner to be listed while it connects")
    stop = footctl("--json", "--link", link, "stop")
    # not confirmed (out of range): named, exit 3, and owed by the one-shot owner
    assert stop.returncode == 3, stop.stdout + stop.stderr
    data = one_json(stop)
    assert "unconfirmed" in data, (data, stop.stderr)
    assert [m["device_id"] for m in data["unconfirmed"]] == [data["devices"][0]["device_id"]]
    assert data["unconfirmed"][0]["owed"] is True
    assert "owed" in stop.stderr and data["devices"][0]["name"] in stop.stderr, stop.stderr
    ctl.request({"cmd": "restore"})
    assert setter.wait(timeout=CLI_TIMEOUT_S) == 4
    assert _first_line(setter)["reason"] == "superseded_by_stop"
    assert not state(ctl)["running"] and state(ctl)["heat"] == 0
    assert state(ctl)["frames_received"] > 0  # the owed off was written once in range


def test_a_stop_that_misses_one_massager_names_it_and_exits_3(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)
    link, ctl = procs.sim("shiatsu-aa55*2")
    ctl.request({"cmd": "fault", "device": 1, "name": "mute", "value": True})
    # no owner: this command stops both itself
    proc = footctl("--json", "--link", link, "stop")
    assert proc.returncode == 3, proc.stderr
    data = one_json(proc)
    assert data["ok"] is False and len(data["devices"]) == 2
    missed = data["unconfirmed"]
    assert len(missed) == 1 and missed[0]["owed"] is False
    assert f"{missed[0]['device']}: everything off NOT confirmed" in proc.stderr
    # through an owner that keeps the off owed
    procs.daemon("--link", link)
    proc = footctl("--json", "stop")
    assert proc.returncode == 3, proc.stderr
    data = one_json(proc)
    assert len(data["devices"]) == 2 and len(data["unconfirmed"]) == 1
    assert data["unconfirmed"][0]["owed"] is True
    assert "owed: footctl pid" in proc.stderr


def test_stop_with_nothing_running_says_so_and_is_not_an_error() -> None:
    proc = footctl("stop")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("footctl: no footctl owner is running")
    assert "nothing running" in proc.stdout
    data = one_json(footctl("--json", "stop"))
    assert data["ok"] is True and data["devices"] == []


def test_an_unknown_device_is_a_name_error(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)
    proc = footctl("--device", "bogus", "stop")
    assert proc.returncode == 3, proc.stderr
    assert "no massager named 'bogus'" in proc.stderr
    link, _ctl = procs.sim("shiatsu-aa55")
    procs.daemon("--link", link)
    held = one_json(footctl("--json", "status"))["devices"][0]["name"]
    proc = footctl("--device", "bogus", "set", "--intensity", "2")
    assert proc.returncode == 3, proc.stderr
    assert "no massager named 'bogus'" in proc.stderr and held in proc.stderr


def test_two_commands_at_once_on_one_massager_share_its_owner(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, FAST_RAMP)
    link, ctl = procs.sim("shiatsu-aa55")
    args = ("--json", "--link", link, "--device", "shiatsu-aa55", "--scan-timeout", "3", "set")
    first = procs.start(*args, "--intensity", "1")
    second = procs.start(*args, "--intensity", "2")
    # one stays the owner; the other goes through it and exits 0
    done = wait_until(lambda: [p for p in (first, second) if p.poll() is not None],
                      CLI_TIMEOUT_S, "one of the two to finish")
    assert len(done) == 1
    assert done[0].returncode == 0, (tmp_path / f"proc{procs.procs.index(done[0])}.err"
                                     ).read_text()
    reply = _first_line(done[0])
    assert reply["ok"] is True and reply["via"].startswith("owner ")
    assert state(ctl)["running"]
    assert footctl("stop").returncode == 0
    owner = first if done[0] is second else second
    assert owner.wait(timeout=CLI_TIMEOUT_S) == 0


def test_a_second_set_while_a_one_shot_ramps_goes_through_its_owner(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(tmp_path, monkeypatch, DEFAULT_RAMP)
    link, ctl = procs.sim("shiatsu-aa55")
    procs.start("--json", "--link", link, "--device", "shiatsu-aa55",
                "set", "--intensity", "3")
    wait_until(lambda: state(ctl)["running"], what="the ramp's first step")
    second = footctl("--json", "--link", link, "--device", "shiatsu-aa55",
                     "set", "--intensity", "2")
    assert second.returncode == 0, second.stderr
    reply = one_json(second)
    assert reply["via"].startswith("owner ") and reply["device"]["desired"]["intensity"] == 2
    assert footctl("stop").returncode == 0
    assert not state(ctl)["running"]
