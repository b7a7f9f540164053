"""An in-process Owner holding virtual massagers on one virtual link (Bumble), with the
real sessions and governors the owner builds; the ``owner_rig`` fixture (conftest.py)
closes it after the test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from footctl.config import Config
from footctl.control.owner import DeviceSpec, Owner
from footctl.device.profile.schema import Profile
from footctl.device.transport.ble import Radio
from footctl.journal import Journal
from footctl.virtual import radio_for_world
from footctl.virtual.link import VirtualWorld
from footctl.virtual.peripheral import VirtualMassager

# Scanning the virtual link finds a massager within one advertising interval (~20 ms);
# 5 s leaves room for a loaded 2-core machine.
SCAN_TIMEOUT_S = 5.0


class OwnerRig:
    """Virtual massagers and an Owner holding them."""

    def __init__(self) -> None:
        self.world = VirtualWorld()
        self.massagers: list[VirtualMassager] = []
        self.owner: Owner | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def build(
        self,
        profiles: list[Profile],
        config: Config | None = None,
        *,
        journal: Journal | None = None,
        connect: bool = True,
        held: int | None = None,
    ) -> Owner:
        """Virtual massagers of ``profiles`` (named m0, m1, ...) and an open Owner under
        ``config`` (the defaults) holding the first ``held`` of them (all)."""
        specs = []
        for i, profile in enumerate(profiles):
            m = await VirtualMassager.create(self.world, profile)
            self.massagers.append(m)
            specs.append(DeviceSpec(profile, m.address, f"m{i}", simulated=True))
        vradio = await radio_for_world(self.world)
        self._closers.append(vradio.close)
        radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
        self.owner = Owner(
            config or Config(), [(s, radio) for s in specs[:held]], journal=journal,
            scan_timeout=SCAN_TIMEOUT_S,
        )  # fmt: skip
        await self.owner.open(connect=connect)
        return self.owner

    async def close(self) -> None:
        if self.owner is not None:
            await self.owner.close()
        for close in self._closers:
            await close()
        for m in self.massagers:
            await m.close()
        await self.world.close()
