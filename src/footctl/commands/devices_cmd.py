"""``footctl devices add``: scan, and write the massager into the config file's
``[[devices]]`` (appended, so the rest of the file and its comments stay as they are)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from footctl.app import progress_printer
from footctl.config import config_path, load_config
from footctl.device.profile.loader import find_profiles, get_profile
from footctl.device.transport.ble import Seen, scan
from footctl.devices import open_radio
from footctl.errors import ConfigError, DeviceUnavailable, ExitCode, UsageError

if TYPE_CHECKING:
    from footctl.cli import Output


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes for what we write).
    return json.dumps(text)


def entry_text(address: str, profile_id: str, name: str | None, *, simulate: bool = False
               ) -> str:
    """The ``[[devices]]`` table for one massager (``simulate``: a virtual one, which
    the owner builds in its own process at this address instead of scanning for it)."""
    lines = ["", "[[devices]]", f"address = {_toml_string(address)}",
             f"profile = {_toml_string(profile_id)}"]
    if name:
        lines.append(f"name = {_toml_string(name)}")
    if simulate:
        lines.append("simulate = true")
    return "\n".join(lines) + "\n"


def _pick(seen: list[Seen], address: str | None) -> Seen:
    if address is not None:
        for s in seen:
            if s.address.lower() == address.lower():
                return s
        raise DeviceUnavailable(
            f"{address} not seen ({len(seen)} other device(s) seen)",
            advice="switch it on and bring it close; 'footctl scan' lists what is in range",
        )
    known = [s for s in seen if s.profile is not None]
    if not known:
        raise DeviceUnavailable(
            f"no massager with a known profile seen ({len(seen)} device(s) seen)",
            advice="'footctl scan' shows why each matched no profile; pass ADDRESS --profile ID",
        )
    return known[0]  # the strongest signal: scan() sorts by RSSI


async def add(args: argparse.Namespace, out: Output) -> int:
    """Scan, pick the massager, and append it to ``[[devices]]``."""
    if args.link:
        # [[devices]] has no field for a sim process's link (config.DeviceConfig): saved
        # as a real massager it would be scanned for over Bluetooth and never found.
        raise UsageError(
            f"a massager on the sim link {args.link} cannot be saved in [[devices]] "
            "(the config file has no link field, and its address is the sim's)",
            advice="pass --link LINK to each command instead, or save a virtual one "
            "with 'footctl --simulate PROFILE devices add'",
        )
    path = config_path(args.config)
    config = load_config(path)
    if args.name and any((d.name or "").lower() == args.name.lower() for d in config.devices):
        raise UsageError(f"a massager named {args.name!r} is already in {path}")
    profiles = find_profiles(list(config.profile_dirs))
    progress = progress_printer(args, out)
    async with open_radio(args, config) as radio:
        progress(f"scanning {radio.label} for {args.timeout:g} s...")  # it waits
        seen = await scan(radio, profiles, args.timeout)
    found = _pick(seen, args.address)
    profile_id = getattr(args, "profile", None) or (found.profile.id if found.profile else None)
    if profile_id is None:
        raise UsageError(
            f"{found.address} matches no profile ({found.reason})",
            advice="name its profile with --profile ID ('footctl profiles' lists them)",
        )
    get_profile(profile_id, list(config.profile_dirs))  # exists
    if any(d.address.lower() == found.address.lower() for d in config.devices):
        raise UsageError(f"{found.address} is already in {path}")
    before = path.read_text(encoding="utf-8") if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (before or "").rstrip("\n")
    simulate = bool(args.simulate)
    entry = entry_text(found.address, profile_id, args.name, simulate=simulate)
    path.write_text(text + "\n" + entry if text else entry.lstrip("\n"), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        raise
    data = {"ok": True, "config_file": str(path), "address": found.address,
            "profile": profile_id, "name": args.name, "simulate": simulate}
    out.result(data, f"added {found.address} ({profile_id}"
               + (f", {args.name}" if args.name else "")
               + (", virtual: simulate = true" if simulate else "") + f") to {path}")
    return ExitCode.OK
