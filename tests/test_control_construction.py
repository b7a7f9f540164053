"""Issue 8: one way to build an owner. A one-shot command (``app.open_owner``), the
in-process owner (``Owner.start``: MQTT and TUI tests, scripts) and the daemon all go
through ``Owner.open_in``: the same journal (the user's, recording from the hub), the
same crash markers, the same programs, crash recovery first."""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from footctl.config import Config, journal_path
from footctl.control.api import Reply, RunRequest, SetRequest, StopRequest
from footctl.control.owner import Owner
from footctl.control.radios import open_radios
from footctl.daemon import Daemon
from footctl.journal import Journal, JournalError
from footctl.programs.loader import default_user_dir, shipped_dir

ZERO_COOLDOWN = Config.model_validate({"caps": {"cooldown_minutes": 0}})


async def _one_shot(stack: contextlib.AsyncExitStack) -> Owner:
    from footctl.app import open_owner

    args = argparse.Namespace(simulate="shiatsu-aa55", link=None, profile=None, device=None,
                              scan_timeout=5.0)
    return await open_owner(stack, args, ZERO_COOLDOWN, lambda _m: None, connect=True)


async def _in_process(stack: contextlib.AsyncExitStack) -> Owner:
    return await stack.enter_async_context(Owner.start(ZERO_COOLDOWN, simulate=["shiatsu-aa55"]))


async def _daemon(stack: contextlib.AsyncExitStack) -> Owner:
    sock = Path(tempfile.mkdtemp(prefix="fd-"))  # a short path: Unix sockets are ~108 bytes
    stack.callback(shutil.rmtree, sock, ignore_errors=True)
    devices = await open_radios(stack, ZERO_COOLDOWN, simulate=["shiatsu-aa55"])
    daemon = await Daemon.open_in(stack, ZERO_COOLDOWN, devices, socket_path=sock / "d.sock")
    await daemon.start(scheduler_loop=False)
    return daemon.owner


STARTS: dict[str, Callable[[contextlib.AsyncExitStack], object]] = {
    "one-shot": _one_shot, "in-process": _in_process, "daemon": _daemon,
}


@pytest.fixture
def own_program() -> Path:
    """A program of the user's own (a copy of a shipped one, renamed)."""
    text = (shipped_dir() / "quick-relax.toml").read_text()
    user = default_user_dir()
    user.mkdir(parents=True, exist_ok=True)
    path = user / "mine.toml"
    path.write_text(text.replace('name = "quick-relax"', 'name = "mine"', 1))
    return path


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as s:
        yield s


@pytest.mark.parametrize("how", sorted(STARTS))
async def test_every_owner_is_built_the_same_way(
    how: str, stack: contextlib.AsyncExitStack, own_program: Path
) -> None:
    """Before: ``Owner.start`` had no program directory (the user's programs were
    unknown to the MQTT bridge and the TUI in-process), and the daemon built its
    owner itself."""
    owner = await STARTS[how](stack)  # type: ignore[misc]
    assert isinstance(owner, Owner)
    assert owner.journal is not None and owner.journal.path == journal_path()
    assert owner.recorder is not None
    assert owner.markers is None  # a virtual massager in this process leaves no marker
    assert owner.program_dir == default_user_dir()
    reply = await owner.request(SetRequest(source="mqtt", intensity=1))
    assert isinstance(reply, Reply), reply
    assert isinstance(await owner.request(StopRequest(source="mqtt")), Reply)
    run = await owner.request(RunRequest(source="tui", program="mine"))
    assert isinstance(run, Reply) and run.started == "mine", run
    assert isinstance(await owner.request(StopRequest(source="tui")), Reply)
    await owner.wait_program(owner.held[0])
    owner.settle_journal()
    with Journal(journal_path()) as journal:
        rows = journal.history(1, include_simulated=True)
    assert [(r.source, r.program) for r in rows] == [("mqtt", None), ("program", "mine")]


async def test_the_daemon_will_not_run_without_its_journal(
    stack: contextlib.AsyncExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-shot owner goes on without a journal it cannot open (a stop must never
    be kept from the massager); the daemon, which checks the night's limits and the
    cooldown from it, does not start."""
    broken = tmp_path / "not-a-db"
    broken.mkdir()
    (broken / "journal.sqlite3").write_text("this is not SQLite " * 100)
    monkeypatch.setenv("FOOTCTL_DATA_DIR", str(broken))
    owner = await _one_shot(stack)
    assert owner.journal is None
    with pytest.raises(JournalError, match="cannot open the journal"):
        await _daemon(stack)


# --- timers in the view ----------------------------------------------------------------------


async def test_the_view_counts_down_the_lease_and_the_cooldown(
    tmp_path: Path, profiles: dict[str, object]
) -> None:
    """Before: ``lease_left_s`` and ``cooldown_left_s`` were always None."""
    from footctl.control.api import LeaseRequest
    from footctl.render import view_text
    from test_journal_sources import journaled_owner

    async with journaled_owner(tmp_path, profiles["shiatsu-aa55"]) as (owner, _rig, _journal):
        idle = owner.snapshot()[0].timers
        assert (idle.lease_left_s, idle.cooldown_left_s) == (None, None)  # nothing ran yet
        assert isinstance(await owner.request(SetRequest(source="mqtt", intensity=1)), Reply)
        assert isinstance(await owner.request(LeaseRequest(source="mqtt", seconds=90)), Reply)
        await owner.request(LeaseRequest(source="tui", seconds=30))  # the soonest counts
        running = owner.snapshot()[0]
        assert running.timers.lease_left_s is not None
        assert 25 <= running.timers.lease_left_s <= 30
        assert running.timers.cooldown_left_s is None  # a session runs: no cooldown yet
        assert "lease 0:" in view_text(running.model_dump())
        assert isinstance(await owner.request(StopRequest(source="mqtt")), Reply)
        after = owner.snapshot()[0]
        cooldown = owner.held[0].governor.limits.cooldown_s
        assert after.timers.lease_left_s is None  # the session's end lets every lease go
        assert after.timers.cooldown_left_s is not None
        assert cooldown - 5 <= after.timers.cooldown_left_s <= cooldown
        assert re.search(r"cooldown (29:5\d|30:00) left", view_text(after.model_dump()))
        refused = await owner.request(SetRequest(device="m0", intensity=1))
        assert not refused.ok and refused.reason == "cooldown"  # what the view said
