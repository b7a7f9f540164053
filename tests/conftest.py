"""Shared fixtures and hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cli_rig import sim_process
from footctl.device.profile.loader import find_profiles
from footctl.device.profile.schema import Profile
from footctl.safety.limits import Caps
from footctl.virtual import VirtualRadio, radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.sim import SimControl
from owner_rig import OwnerRig
from virtual_rig import Bench, BenchFactory, open_bench

# "ci" runs more examples than the default quick local run; scripts/test selects it.
# CI runs a fixed set of examples (derandomized: a red CI is reproducible, never a
# lucky draw); scripts/soak explores new ones at random.
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

SHIPPED = sorted(find_profiles())


@pytest.fixture(scope="session")
def profiles() -> dict[str, Profile]:
    """The shipped profiles by id."""
    return find_profiles()


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's real config, state and sockets."""
    monkeypatch.setenv("FOOTCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("FOOTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FOOTCTL_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("FOOTCTL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FOOTCTL_PROGRAM_DIR", str(tmp_path / "programs"))
    monkeypatch.delenv("FOOTCTL_LINK", raising=False)


@pytest.fixture
async def world() -> AsyncIterator[VirtualWorld]:
    """A fresh virtual link, closed after the test."""
    w = VirtualWorld()
    yield w
    await w.close()


@pytest.fixture
async def radio(world: VirtualWorld) -> AsyncIterator[VirtualRadio]:
    """A bleak-facing central on ``world``."""
    r = await radio_for_world(world)
    yield r
    await r.close()


@pytest.fixture
async def bench_factory() -> AsyncIterator[BenchFactory]:
    """``await bench_factory(profile, caps)``: a connected Bench, closed after the test."""
    made: list[Bench] = []

    async def make(profile: Profile, caps: Caps, *, session_on_clock: bool = False) -> Bench:
        bench = await open_bench(profile, caps, session_on_clock=session_on_clock)
        made.append(bench)
        return bench

    yield make
    for bench in made:
        await bench.close()


@pytest.fixture
async def owner_rig() -> AsyncIterator[OwnerRig]:
    """Virtual massagers and an in-process Owner (``await owner_rig.build(...)``)."""
    r = OwnerRig()
    yield r
    await r.close()


@pytest.fixture
def sim_aa55(tmp_path: Path) -> Iterator[tuple[str, SimControl]]:
    """A ``footctl sim shiatsu-aa55`` process: (link address, control client)."""
    with sim_process(tmp_path / "sim.err", "shiatsu-aa55") as running:
        yield running
