"""The radios an owner reaches its massagers through, and the massagers on each.

* virtual massagers in this process (``--simulate ems-v2,shiatsu-aa55*16``, or
  ``simulate = true`` on a ``[[devices]]`` entry): one virtual link, one central;
* the massagers a ``footctl sim`` process serves on a link (``--link HOST:PORT``):
  those named, or every known one found on it;
* the configured real massagers, through the machine's Bluetooth adapter.

Bumble is imported only when a virtual massager or a link is asked for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from footctl.config import Config
from footctl.control.owner import DeviceSpec
from footctl.device.profile.loader import find_profiles, get_profile
from footctl.device.transport.ble import Radio, Seen, scan
from footctl.errors import DeviceUnavailable, UsageError

_LOG = logging.getLogger(__name__)

# Looking for the massagers a sim serves on its link: each advertises every 20 ms,
# so a short look finds them all; the look ends early once the named one is seen.
LINK_SCAN_S = 1.5

# A count past this is a typing slip, not a test bench.
MAX_SIMULATED = 64


def expand_simulate(items: Sequence[str]) -> list[str]:
    """``["ems-v2,shiatsu-aa55*2"]`` -> ``["ems-v2", "shiatsu-aa55", "shiatsu-aa55"]``."""
    out: list[str] = []
    for item in items:
        for raw in item.split(","):
            part = raw.strip()
            if not part:
                continue
            pid, star, count = part.partition("*")
            n = 1
            if star:
                try:
                    n = int(count)
                except ValueError:
                    raise UsageError(f"--simulate {part!r}: the count after * is not a number",
                                     advice="e.g. --simulate shiatsu-aa55*16") from None
            if not 1 <= n <= MAX_SIMULATED:
                raise UsageError(f"--simulate {part!r}: 1 to {MAX_SIMULATED} massagers")
            out.extend([pid.strip()] * n)
    if len(out) > MAX_SIMULATED:
        raise UsageError(f"--simulate: at most {MAX_SIMULATED} massagers")
    return out


async def open_radios(
    stack: contextlib.AsyncExitStack,
    config: Config,
    *,
    simulate: Sequence[str] = (),
    link: str | None = None,
    link_profile: str | None = None,
    link_device: str | None = None,
    use_config_devices: bool = True,
    extra: Sequence[DeviceSpec] = (),
) -> list[tuple[DeviceSpec, Radio]]:
    """Open what the massagers need (closed by ``stack``); each massager with its
    radio. ``extra`` are real massagers named on the command line."""
    dirs = list(config.profile_dirs)
    out: list[tuple[DeviceSpec, Radio]] = []
    virtual: list[tuple[str, str | None, str | None]] = []  # profile, address, name
    for pid in expand_simulate(simulate):
        virtual.append((pid, None, None))
    real: list[DeviceSpec] = list(extra)
    if use_config_devices and not simulate and not link:
        for dev in config.devices:
            if dev.simulate:
                virtual.append((dev.profile, dev.address, dev.name))
            else:
                real.append(DeviceSpec(get_profile(dev.profile, dirs), dev.address, dev.name))
    if virtual:
        out.extend(await _open_virtual(stack, config, virtual))
    if link:
        out.extend(await _open_link(stack, config, link, link_profile, link_device))
    if real:
        radio = Radio()
        out.extend((spec, radio) for spec in real)
    return out


async def _open_virtual(
    stack: contextlib.AsyncExitStack,
    config: Config,
    wanted: list[tuple[str, str | None, str | None]],
) -> list[tuple[DeviceSpec, Radio]]:
    from footctl.virtual import radio_for_world  # noqa: PLC0415 - Bumble only when used
    from footctl.virtual.link import VirtualWorld  # noqa: PLC0415
    from footctl.virtual.peripheral import VirtualMassager  # noqa: PLC0415

    dirs = list(config.profile_dirs)
    profiles = [get_profile(pid, dirs) for pid, _, _ in wanted]
    world = VirtualWorld()
    stack.push_async_callback(world.close)
    counts: dict[str, int] = {}
    for pid, _a, _n in wanted:
        counts[pid] = counts.get(pid, 0) + 1
    seen: dict[str, int] = {}
    specs: list[DeviceSpec] = []
    for profile, (pid, address, name) in zip(profiles, wanted, strict=True):
        massager = await VirtualMassager.create(world, profile, address)
        stack.push_async_callback(massager.close)
        seen[pid] = seen.get(pid, 0) + 1
        label = name
        if label is None:
            label = pid if counts[pid] == 1 else f"{pid}-{seen[pid]}"
        specs.append(DeviceSpec(profile, massager.address, label, simulated=True))
    vradio = await radio_for_world(world)
    stack.push_async_callback(vradio.close)
    radio = Radio("virtual", vradio.scanner_backend, vradio.client_backend)
    return [(spec, radio) for spec in specs]


async def _open_link(
    stack: contextlib.AsyncExitStack,
    config: Config,
    link: str,
    link_profile: str | None,
    link_device: str | None,
) -> list[tuple[DeviceSpec, Radio]]:
    from footctl.virtual import radio_for_link  # noqa: PLC0415 - Bumble only when used

    try:
        vradio = await radio_for_link(link)
    except OSError as exc:
        raise DeviceUnavailable(
            f"no footctl sim at {link}: {exc.strerror or exc}",
            advice="start one with 'footctl sim PROFILE_ID' and pass the address it prints",
        ) from exc
    stack.push_async_callback(vradio.close)
    radio = Radio(f"link {link}", vradio.scanner_backend, vradio.client_backend)
    dirs = list(config.profile_dirs)
    if link_profile is not None:
        return [(DeviceSpec(get_profile(link_profile, dirs), link_device, None), radio)]
    # Every known massager the sim serves (or the one named).
    want = link_device.lower() if link_device else None

    def named(s: Seen) -> bool:
        names = (s.address.lower(), (s.name or "").lower(), s.profile.id if s.profile else "")
        return want is None or want in names

    seen = await scan(
        radio, find_profiles(dirs), LINK_SCAN_S, until=named if want is not None else None
    )
    found = [s for s in seen if s.profile is not None and named(s)]
    if not found:
        what = f"named {link_device!r} " if link_device else ""
        raise DeviceUnavailable(
            f"no known massager {what}on the link {link} ({len(seen)} device(s) seen)",
            advice="'footctl --link ADDRESS scan' shows what the sim serves",
        )
    found.sort(key=lambda s: s.address)
    out = []
    for s in found:
        assert s.profile is not None
        out.append((DeviceSpec(s.profile, s.address, None), radio))
    return out
