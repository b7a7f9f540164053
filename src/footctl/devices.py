"""Reaching massagers outside an owner: the radio for ``footctl scan``, finding a
known massager by scanning, and turning off what a crashed run left on (which the
owner does first, before it builds its own sessions)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from footctl.config import Config
from footctl.device.profile.loader import find_profiles, get_profile
from footctl.device.profile.schema import Profile
from footctl.device.session import DeviceSession
from footctl.device.transport.ble import Radio, scan
from footctl.errors import DeviceUnavailable, FootctlError, UsageError
from footctl.journal import Journal
from footctl.journal_hooks import recover_journal
from footctl.safety.markers import Marker, MarkerStore

_LOG = logging.getLogger(__name__)

# Looking for a device a crashed run left on: long enough for a nearby massager to
# advertise a few times, short enough not to hold up the command the user asked for.
RECOVERY_SCAN_S = 5.0

Progress = Callable[[str], None]


@contextlib.asynccontextmanager
async def open_radio(args: argparse.Namespace, config: Config) -> AsyncIterator[Radio]:
    """The radio for this run: in-process virtual massager, a sim process, or Bluetooth."""
    if args.simulate:
        from footctl.control.radios import expand_simulate  # noqa: PLC0415
        from footctl.virtual import radio_for_world  # noqa: PLC0415 - Bumble only when used
        from footctl.virtual.link import VirtualWorld  # noqa: PLC0415
        from footctl.virtual.peripheral import VirtualMassager  # noqa: PLC0415

        dirs = list(config.profile_dirs)
        profiles = [get_profile(p, dirs) for p in expand_simulate([args.simulate])]
        world = VirtualWorld()
        massagers = [await VirtualMassager.create(world, p) for p in profiles]
        vradio = await radio_for_world(world)
        try:
            yield Radio("virtual link", vradio.scanner_backend, vradio.client_backend)
        finally:
            await vradio.close()
            for massager in massagers:
                await massager.close()
            await world.close()
    elif args.link:
        from footctl.virtual import radio_for_link  # noqa: PLC0415

        try:
            vradio = await radio_for_link(args.link)
        except OSError as exc:
            raise DeviceUnavailable(
                f"no footctl sim at {args.link}: {exc.strerror or exc}",
                advice="start one with 'footctl sim PROFILE_ID' and pass the address it prints",
            ) from exc
        try:
            yield Radio(f"link {args.link}", vradio.scanner_backend, vradio.client_backend)
        finally:
            await vradio.close()
    else:
        yield Radio()


def radio_is_inprocess(args: argparse.Namespace) -> bool:
    """True when the virtual massager lives and dies with this process."""
    return bool(args.simulate)


def resolve_profile(args: argparse.Namespace, config: Config) -> Profile | None:
    """The profile named by flags or config, or None if only a scan can tell."""
    dirs = list(config.profile_dirs)
    if args.simulate:
        from footctl.control.radios import expand_simulate  # noqa: PLC0415

        return get_profile(expand_simulate([args.simulate])[0], dirs)
    if args.profile:
        return get_profile(args.profile, dirs)
    if args.device:
        for index, dev in enumerate(config.devices):
            if args.device.lower() in (dev.address.lower(), (dev.name or "").lower()):
                return configured_profile(config, index)
    if len(config.devices) == 1 and not args.device:
        return configured_profile(config, 0)
    return None


def configured_profile(config: Config, index: int) -> Profile:
    """The profile of the config's ``[[devices]]`` entry ``index``; a profile that
    does not exist is a config error naming the file and line."""
    dev = config.devices[index]
    try:
        return get_profile(dev.profile, list(config.profile_dirs))
    except UsageError as exc:
        raise config.problem(
            f"no profile {dev.profile!r} ({exc.advice})", "devices", index, "profile"
        ) from exc


async def find_profile_by_scan(
    args: argparse.Namespace, config: Config, radio: Radio, progress: Progress
) -> tuple[Profile, str]:
    """Scan for a massager matching ``--device`` (or any known one)."""
    profiles = find_profiles(list(config.profile_dirs))
    want = args.device.lower() if args.device else None

    def wanted(s: Any) -> bool:
        if s.profile is None:
            return False
        return want is None or want in (s.address.lower(), (s.name or "").lower())

    progress(f"scanning {radio.label} for a known massager...")
    seen = await scan(radio, profiles, args.scan_timeout, until=wanted)
    for s in seen:
        if wanted(s) and s.profile is not None:
            return s.profile, s.address
    raise DeviceUnavailable(
        f"no known massager found within {args.scan_timeout:g} s ({len(seen)} device(s) seen)",
        advice="switch it on, or name it with --device and --profile; 'footctl scan' shows why "
        "each device matched no profile",
    )


async def recover_after_crash(
    radio: Radio,
    config: Config,
    markers: MarkerStore,
    progress: Progress,
    journal: Journal | None = None,
    *,
    connect: Callable[[DeviceSession], Awaitable[None]] = DeviceSession.connect,
) -> list[Marker]:
    """Turn off every device a dead footctl run left mid-session; returns those done.
    With a ``journal``, the dead run's rows end as ``recovered_after_crash``.
    ``connect`` reaches a massager (the owner's; a test's scripted link)."""
    done: list[Marker] = []
    for marker in markers.orphaned():
        try:
            profile = get_profile(marker.profile_id, list(config.profile_dirs))
        except UsageError:
            continue
        print(
            f"footctl: the run that started a session on {marker.address} (pid {marker.pid}) "
            "died; turning that massager off first",
            file=sys.stderr,
            flush=True,
        )
        session = DeviceSession(
            profile,
            radio,
            address=marker.address,
            scan_timeout=RECOVERY_SCAN_S,
            on_progress=progress,
        )
        try:
            await connect(session)
            await session.all_off()
        except FootctlError as exc:
            print(
                f"footctl: could not reach {marker.address} to turn it off: {exc}; "
                "will try again next time",
                file=sys.stderr,
            )
            continue
        finally:
            await session.close()
        markers.clear(marker.address)
        _LOG.warning("%s: recovered_after_crash (pid %d)", marker.address, marker.pid)
        done.append(marker)
    if journal is not None:
        recover_journal(
            journal,
            turned_off=[m.address for m in done],
            still_owed=[m.address for m in markers.all()],
        )
    return done
