"""The authoring tools of issue #12 against virtual massagers: ``explore`` (table, JSON,
the TOML skeleton), ``sniff`` (timestamps, hex, decode, writes, log, duration, Ctrl-C)
and ``profile test`` (per capability, good and broken files).

Most tests run the command handlers in-process on a virtual world the test owns (so
it can look at what the device did); a few run ``footctl`` itself for exit codes and
signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from footctl.cli import Output, build_parser, main
from footctl.commands import authoring
from footctl.commands.skeleton import (
    FILL_IN,
    FILL_IN_LINE,
    pick_endpoints,
    render_skeleton,
    short_uuid,
)
from footctl.config import Config
from footctl.device.profile.base import normalize_uuid
from footctl.device.profile.loader import find_profiles, load_profile, shipped_dir
from footctl.device.transport.ble import Radio
from footctl.device.transport.gatt_probe import CharacteristicInfo, GattDump, ServiceInfo
from footctl.safety.markers import MarkerStore
from footctl.virtual import VirtualWorld, radio_for_world
from footctl.virtual.peripheral import VirtualMassager
from footctl.virtual.sim import SimControl

PROFILES = find_profiles()
ROOT = Path(__file__).resolve().parents[1]
# Wall-clock bound for a footctl subprocess; generous because CI machines are shared.
CLI_TIMEOUT_S = 60.0
# A short scan: the virtual massagers advertise every 20 ms.
SCAN = ["--scan-timeout", "3"]

Run = Callable[..., Any]


@pytest.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """A virtual world the authoring commands reach instead of opening their own."""
    world = VirtualWorld()
    massagers: dict[str, VirtualMassager] = {}

    @contextlib.asynccontextmanager
    async def open_radio(_args: Any, _config: Any) -> AsyncIterator[Radio]:
        vradio = await radio_for_world(world)
        try:
            yield Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
        finally:
            await vradio.close()

    async def add(pid: str) -> VirtualMassager:
        massagers[pid] = await VirtualMassager.create(world, PROFILES[pid])
        return massagers[pid]

    monkeypatch.setattr(authoring, "open_radio", open_radio)
    try:
        yield {"add": add, "massagers": massagers}
    finally:
        for m in massagers.values():
            await m.close()
        await world.close()


async def run(argv: list[str], *, as_json: bool = False) -> int:
    """One authoring command, in-process."""
    args = build_parser().parse_args([*(["--json"] if as_json else []), *SCAN, *argv])
    return await authoring.dispatch(args, Config(), Output(as_json))


async def cli(*argv: str) -> tuple[int, str, str]:
    """``footctl`` itself, in a subprocess (from inside a running event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "footctl.cli", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


# --- explore -------------------------------------------------------------------------


async def test_explore_table_lists_services_characteristics_descriptors_and_values(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    m = await rig["add"]("shiatsu-aa55")
    assert await run(["explore", "FM-AA55"]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert m.address in table.splitlines()[0]
    by_uuid = {line.split()[1]: line for line in rows.values()}
    assert "service" in by_uuid["FFF0"] and "<- the skeleton's service" in by_uuid["FFF0"]
    assert "write-without-response, write" in by_uuid["FFF1"] and "<- write" in by_uuid["FFF1"]
    assert "notify" in by_uuid["FFF4"] and "<- notify" in by_uuid["FFF4"]
    # the Generic Access device name is read and shown as hex and text
    assert '46 4d 2d 41 41 35 35  "FM-AA55"' in by_uuid["2A00"]
    # the notify characteristic's CCCD, one handle after its value
    notify_handle = int(by_uuid["FFF4"].split()[0], 16)
    cccd = rows[f"0x{notify_handle + 1:04x}"]
    assert "2902" in cccd and "descriptor" in cccd and cccd.rstrip().endswith("00 00")


async def test_explore_json_has_the_dump_endpoints_and_skeleton(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    await rig["add"]("aircomp-duo")
    assert await run(["explore", "AIRDUO"], as_json=True) == 0
    data = one_json(capsys.readouterr().out)
    profile = PROFILES["aircomp-duo"]
    assert data["ok"] is True
    assert data["endpoints"]["service"] == profile.gatt.service
    assert data["endpoints"]["write"] == profile.gatt.write
    assert data["endpoints"]["notify"] == profile.gatt.notify
    chars = [c for s in data["device"]["services"] for c in s["characteristics"]]
    names = [c for c in chars if c["uuid"] == "00002a00-0000-1000-8000-00805f9b34fb"]
    assert bytes.fromhex(names[0]["value"]).decode() == "AIRDUO"
    assert data["skeleton"].startswith("# footctl profile skeleton")


def _chunks(text: str) -> list[tuple[str, str]]:
    """A TOML text cut at its table headers: (header, text) pairs, ("", preamble) first."""
    out: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        match = re.match(r"^\[\[?([^\]]+)\]", line)
        if match:
            out.append((match.group(1).strip(), []))
        out[-1][1].append(line)
    return [(h, "\n".join(lines)) for h, lines in out]


def fill_in(skeleton: str, shipped: str, endpoint_names: dict[str, str]) -> str:
    """What the user does: keep the skeleton's known part, name the extra endpoints,
    and replace the template with the device's capabilities, framing, commands and status
    (here copied from the shipped profile the virtual massager was generated from)."""
    top = skeleton.split(FILL_IN_LINE, maxsplit=1)[0]
    for uuid, name in endpoint_names.items():
        top = top.replace(
            f'# [gatt.endpoints.NAME]\n# uuid = "{uuid}"',
            f'[gatt.endpoints.{name}]\nuuid = "{uuid}"',
        )
    rest = [
        text for header, text in _chunks(shipped)
        if header and header.split(".")[0] not in ("advertisement", "gatt")
    ]
    return top + "\n" + "\n".join(rest) + "\n"


# Virtual massagers of shipped v2 profiles that name their endpoints by UUID: keys-table
# has a second write endpoint; bed-okin-7byte-nordic a 128-bit service and no notify.
# (The virtual massager offers notify only with a status, so bed-reverie and bed-jensen,
# which name a notify characteristic but no status, do not show one.)
SKELETON_CASES: dict[str, dict[str, str]] = {
    "aircomp-duo": {}, "aircomp-mini": {}, "keys-table": {"FFE3": "keys"},
    "bed-okin-7byte-nordic": {},
}


@pytest.mark.parametrize("pid", sorted(SKELETON_CASES))
async def test_skeleton_filled_in_loads_with_the_shipped_endpoints(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, pid: str
) -> None:
    profile = PROFILES[pid]
    await rig["add"](pid)
    out = tmp_path / "skeleton.toml"
    assert await run(["explore", profile.advertisement.local_name, "--toml",
                      "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    skeleton = out.read_text()
    assert printed.strip() == skeleton.strip()
    # As it is, the skeleton does not load, and the error names a placeholder's line.
    assert FILL_IN in skeleton
    code, _, err = await cli("profile", "check", str(out))
    assert code == 2
    placeholders = {
        i for i, line in enumerate(skeleton.splitlines(), 1) if f'= "{FILL_IN}' in line
    }
    assert placeholders and set(map(int, re.findall(r"skeleton\.toml:(\d+):", err))) == (
        placeholders
    )
    # Filled in, it loads, lints clean of errors, and its endpoints are the shipped ones.
    filled = tmp_path / "filled.toml"
    shipped = (shipped_dir() / f"{pid}.toml").read_text()
    filled.write_text(fill_in(skeleton, shipped, SKELETON_CASES[pid]))
    code, _, err = await cli("profile", "check", str(filled))
    assert code == 0, err
    got = load_profile(filled)
    assert got.gatt.service == profile.gatt.service
    assert got.gatt.write_specifier == profile.gatt.write_specifier
    assert got.gatt.notify_specifier == profile.gatt.notify_specifier
    assert got.gatt.mtu == profile.gatt.mtu
    assert {n: e.specifier for n, e in got.gatt.endpoints.items()} == {
        n: e.specifier for n, e in profile.gatt.endpoints.items()
    }
    assert got.advertisement.service_uuids == profile.advertisement.service_uuids
    assert got.advertisement.local_name == profile.advertisement.local_name


def test_explore_unknown_device_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--simulate", "shiatsu-aa55", "--scan-timeout", "0.5", "--json",
                 "explore", "NO-SUCH-DEVICE"])
    assert code == 3
    data = one_json(capsys.readouterr().out)
    assert data["ok"] is False and data["error"] == "unreachable"
    assert "NO-SUCH-DEVICE" in data["message"] and "FM-AA55" in data["message"]


def test_explore_never_overwrites_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "mine.toml"
    existing.write_text("keep me")
    code = main(["--simulate", "shiatsu-aa55", "explore", "FM-AA55", "-o", str(existing)])
    assert code == 2
    assert existing.read_text() == "keep me"
    assert "exists" in capsys.readouterr().err


# --- sniff ---------------------------------------------------------------------------

QUERY_AA55 = "aa 55 02 05 00 f8"
POWER_ON_AA55 = "aa 55 02 01 01 fd"
LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3}) +([+-]\d+\.\d{3})s (->|<-) (\S+) +((?:[0-9a-f]{2} ?)+)(.*)$"
)


async def test_sniff_writes_the_query_and_shows_the_status_decoded(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await rig["add"]("shiatsu-aa55")
    log = tmp_path / "sniff.log"
    log.write_text("earlier line\n")
    assert await run(["sniff", "FM-AA55", "--profile", "shiatsu-aa55", "--write", QUERY_AA55,
                      "--duration", "0.5", "--log", str(log)]) == 0
    captured = capsys.readouterr()
    lines = [LINE.match(line) for line in captured.out.splitlines()]
    assert all(lines), captured.out
    events = [(m.group(3), m.group(4), m.group(5).strip(), m.group(6).strip())
              for m in lines if m]
    writes = [i for i, e in enumerate(events) if e[0] == "->"]
    assert len(writes) == 1
    assert events[writes[0]] == ("->", "FFF1", QUERY_AA55, "query  (without response)")
    statuses = [e for e in events[writes[0]:] if e[0] == "<-" and e[1] == "FFF4"]
    assert statuses, events
    assert statuses[0][2].startswith("aa 55 06 85")
    assert statuses[0][3] == (
        "status running=off intensity=1 heat=0 mode=kneading temperature=30"
    )
    # elapsed time counts from the subscription and never goes back
    elapsed = [float(m.group(2)) for m in lines if m]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    # the log got the same lines, appended
    assert log.read_text().splitlines() == ["earlier line", *captured.out.splitlines()]
    assert "duration: " in captured.err


async def test_sniff_json_lines_and_the_write_kind_the_profile_asks_for(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # aircomp-duo writes with response; its characteristic offers both
    await rig["add"]("aircomp-duo")
    assert await run(["sniff", "AIRDUO", "--profile", "aircomp-duo", "--write", "a5 5a 01 01 0f fd",
                      "--duration", "0.3"], as_json=True) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    writes = [r for r in records if r.get("event") == "write"]
    assert len(writes) == 1 and writes[0]["hex"] == "a5 5a 01 01 0f fd"
    assert writes[0]["decoded"] == {"command": "query", "value": None}
    notes = [r for r in records if r.get("event") == "notify"]
    assert any("status" in (r["decoded"] or {}) for r in notes)
    assert records[-1] == {"event": "end", "ok": True, "reason": "duration",
                           "notifications": len(notes), "writes": 1}


async def test_sniff_switches_the_massager_off_after_raw_writes(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    m = await rig["add"]("shiatsu-aa55")
    assert await run(["sniff", "FM-AA55", "--profile", "shiatsu-aa55",
                      "--write", POWER_ON_AA55, "--duration", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "status running=on" in out  # the raw write did switch it on
    assert not m.model.running  # and the sniff left it off
    powers = [bytes.fromhex(r.hex) for r in m.frames if r.command == "power"]
    assert powers == [bytes.fromhex(POWER_ON_AA55), bytes.fromhex("aa 55 02 01 00 fc")]
    assert bytes.fromhex(m.frames[-1].hex) == bytes.fromhex("aa 55 02 01 00 fc")


async def test_sniff_without_a_profile_prints_raw_hex_and_warns_after_writes(
    rig: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    await rig["add"]("shiatsu-aa55")
    assert await run(["sniff", "FM-AA55", "--write", QUERY_AA55, "--duration", "0.3"]) == 0
    captured = capsys.readouterr()
    lines = [LINE.match(line) for line in captured.out.splitlines()]
    writes = [m for m in lines if m and m.group(3) == "->"]
    notes = [m for m in lines if m and m.group(3) == "<-"]
    assert len(writes) == 1 and notes and all(lines), captured.out
    # no profile: the characteristic offers a write with response, so it is used
    assert writes[0].group(6).strip() == "(with response)"
    assert all(m.group(6) == "" for m in notes)  # nothing to decode through
    assert "outside the safety governor" in captured.err


def test_sniff_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", "shiatsu-aa55", "sniff", "FM-AA55", "--write", "zz"]) == 2
    assert "--write 'zz'" in capsys.readouterr().err
    assert main(["--simulate", "shiatsu-aa55", "sniff", "FM-AA55", "--write", "aa",
                 "--to", "FFF4", "--duration", "1"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["--simulate", "shiatsu-aa55", "sniff", "FM-AA55", "--duration", "0"]) == 2


@pytest.mark.e2e
def test_sniff_runs_until_ctrl_c_and_then_ends_normally(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "footctl.cli", "--simulate", "shiatsu-aa55", "sniff",
         "FM-AA55", "--profile", "shiatsu-aa55"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the status the device sends every second
        assert "<- FFF4" in first and "status running=off" in first, first
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted: " in err


# --- profile test --------------------------------------------------------------------


def test_profile_test_passes_a_shipped_profile(capsys: pytest.CaptureFixture[str]) -> None:
    path = shipped_dir() / "aircomp-duo.toml"
    assert main(["--json", "profile", "test", str(path)]) == 0
    data = one_json(capsys.readouterr().out)
    assert data["ok"] is True and data["failed"] == []
    caps = {r["capability"] for r in data["results"]}
    assert {"commands", "status", "power", "intensity", "mode", "zone", "heat", "timer"} <= caps
    assert all(r["checked"] > 0 for r in data["results"])


def test_profile_test_fails_vectors_naming_the_capability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = shipped_dir() / "shiatsu-aa55.toml"
    good = ROOT / "tests" / "vectors" / "shiatsu-aa55.toml"
    assert main(["profile", "test", str(profile), "--vectors", str(good)]) == 0
    capsys.readouterr()
    bad = tmp_path / "vectors.toml"
    bad.write_text(
        good.read_text()
        .replace('hex = "aa 55 02 03 05 fb"', 'hex = "aa 55 02 03 05 fa"')
        .replace("intensity = 3, heat = 1", "intensity = 4, heat = 1")
    )
    assert main(["--json", "profile", "test", str(profile), "--vectors", str(bad)]) == 2
    data = one_json(capsys.readouterr().out)
    assert data["failed"] == ["commands", "status"]
    problems = {r["capability"]: r["problems"] for r in data["results"]}
    assert problems["commands"] == [
        "vector intensity=5: encodes as aa 55 02 03 05 fb, the vector says aa 55 02 03 05 fa"
    ]
    assert len(problems["status"]) == 1 and "intensity=3" in problems["status"][0]


def test_profile_test_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.toml"
    path.write_text('schema_version = 2\nid = "x"\n')
    assert main(["profile", "test", str(path)]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert main(["profile", "test", str(tmp_path / "missing.toml")]) == 2


# --- the skeleton's choice of endpoints (pure) ----------------------------------------


def _char(uuid: str, handle: int, *props: str) -> CharacteristicInfo:
    return CharacteristicInfo(normalize_uuid(uuid), handle, "", tuple(props))


def _service(uuid: str, handle: int, *chars: CharacteristicInfo) -> ServiceInfo:
    return ServiceInfo(normalize_uuid(uuid), handle, chars)


def _dump(*services: ServiceInfo, advertised: tuple[str, ...] = ()) -> GattDump:
    return GattDump("AA:BB:CC:DD:EE:FF", "X1", -60, tuple(normalize_uuid(u) for u in advertised),
                    (), 23, services)


GAP_WRITABLE = _service("1801", 1, _char("2B29", 3, "read", "write"))
QUIET = _service("FFA0", 10, _char("FFA1", 12, "write"))
TALKS = _service("FFB0", 20, _char("FFB1", 22, "write-without-response"),
                 _char("FFB2", 24, "notify"), _char("FFB3", 27, "write"))


def test_pick_endpoints_never_a_standard_service_and_prefers_advertised_then_notifying() -> None:
    ep = pick_endpoints(_dump(GAP_WRITABLE, QUIET, TALKS))
    assert ep is not None
    assert short_uuid(ep.service.uuid) == "FFB0"  # not advertised: the one that notifies
    assert (short_uuid(ep.write.uuid), ep.notify and short_uuid(ep.notify.uuid)) == (
        "FFB1", "FFB2"
    )
    assert [short_uuid(c.uuid) for c in ep.other_writes] == ["FFB3"]
    advertised = pick_endpoints(_dump(GAP_WRITABLE, QUIET, TALKS, advertised=("FFA0",)))
    assert advertised is not None and short_uuid(advertised.service.uuid) == "FFA0"
    assert advertised.notify is None
    assert pick_endpoints(_dump(GAP_WRITABLE)) is None


def test_skeleton_names_by_handle_what_a_uuid_cannot_tell_apart() -> None:
    twins = _service("FFC0", 30, _char("FFC1", 32, "write"), _char("FFC1", 34, "notify"))
    skeleton = render_skeleton(_dump(twins))
    assert "write_handle = 0x0020" in skeleton and "notify_handle = 0x0022" in skeleton
    assert "write_with_response = true" in skeleton
    without = render_skeleton(_dump(GAP_WRITABLE))
    assert 'service = "<FILL IN' in without and 'write = "<FILL IN' in without


# --- over --link to a separate `footctl sim` process -----------------------------------


@pytest.fixture
def sim() -> Iterator[tuple[str, str, SimControl]]:
    """A ``footctl sim shiatsu-aa55`` process: (link address, device address, control)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "footctl.cli", "sim", "shiatsu-aa55"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("footctl sim:"), first
        control = first.split(" control ")[1].split()[0]
        yield first.split()[-1], first.split()[4], SimControl(control)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def over(link: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``footctl --link LINK ...`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "footctl.cli", "--link", link, *argv],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )


@pytest.mark.e2e
def test_explore_and_sniff_over_a_link_to_a_sim_process(
    sim: tuple[str, str, SimControl],
) -> None:
    link, address, ctl = sim
    explored = over(link, "--json", "explore", "FM-*")
    assert explored.returncode == 0, explored.stderr
    data = one_json(explored.stdout)
    assert data["device"]["address"] == address
    assert data["endpoints"]["write"] == PROFILES["shiatsu-aa55"].gatt.write
    sniffed = over(link, "sniff", "FM-AA55", "--profile", "shiatsu-aa55", "--duration", "0.3",
                   "--write", POWER_ON_AA55)
    assert sniffed.returncode == 0, sniffed.stderr
    assert "power 1" in sniffed.stdout and "status running=on" in sniffed.stdout
    assert ctl.request({"cmd": "state"})["running"] is False  # off when the sniff ended
    assert MarkerStore().all() == []


@pytest.mark.e2e
def test_a_sniff_killed_after_a_raw_write_is_undone_by_the_next_run(
    sim: tuple[str, str, SimControl],
) -> None:
    link, address, ctl = sim
    proc = subprocess.Popen(
        [sys.executable, "-m", "footctl.cli", "--link", link, "sniff", "FM-AA55",
         "--profile", "shiatsu-aa55", "--write", POWER_ON_AA55],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "status running=on" in line:
                break
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ctl.request({"cmd": "state"})["running"] is True
    assert [m.address for m in MarkerStore().all()] == [address]
    status = over(link, "--device", address, "--profile", "shiatsu-aa55", "status")
    assert status.returncode == 0, status.stderr
    assert "died; turning that massager off first" in status.stderr
    assert ctl.request({"cmd": "state"})["running"] is False
    assert MarkerStore().all() == []
