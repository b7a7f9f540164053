"""``footctl config show`` and ``footctl config check``.

``show``: the effective caps, each with where its value comes from (default, or the
config file and line), its valid range, and with ``--profile`` the limits on that
massager (its range, your caps, the ceilings); then every path footctl uses.
``check``: every problem of the config file, of its ``[[devices]]`` profiles and
schedules, and of the program and profile files, with file, line and field.
"""

from __future__ import annotations

import argparse
import os
import typing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import annotated_types

from footctl.config import (
    CONFIG_ENV,
    DATA_DIR_ENV,
    RUNTIME_DIR_ENV,
    STATE_DIR_ENV,
    CapsConfig,
    Config,
    Salvaged,
    config_path,
    data_dir,
    journal_path,
    load_config,
    runtime_dir,
    salvage_config,
    state_dir,
)
from footctl.device.profile.loader import PROFILE_DIR_ENV, get_profile, scan_profiles, shipped_dir
from footctl.errors import ConfigError, ExitCode, FootctlError
from footctl.programs.loader import PROGRAM_DIR_ENV, default_user_dir, scan_programs
from footctl.programs.loader import shipped_dir as shipped_programs
from footctl.safety.limits import Limits

if TYPE_CHECKING:
    from footctl.cli import Output


def valid_range(name: str) -> str:
    """The valid range of a ``[caps]`` setting, from its definition (``> 0, <= 45``)."""
    field = CapsConfig.model_fields[name]
    if field.annotation is bool:
        return "true or false"
    metadata = list(field.metadata)
    optional = False
    for arg in typing.get_args(field.annotation):  # Annotated[int, Field(ge=0)] | None
        if arg is type(None):
            optional = True
        for inner in typing.get_args(arg)[1:]:
            metadata += getattr(inner, "metadata", [])
    parts = []
    for meta in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(meta, attr, None)
            if isinstance(meta, annotated_types.BaseMetadata) and bound is not None:
                parts.append(f"{sign} {bound:g}")
    text = ", ".join(parts) or "any"
    return f"{text}, or unset" if optional else text


# Why the governor raises a setting to its floor on a real radio (safety/limits.py).
FLOOR_REASONS = {
    "cooldown_minutes": "a new session cannot see the last one's heat dose, so the feet "
                        "must have cooled down first",
    "intensity_step_seconds": "a person needs a few seconds at a level to feel whether it "
                              "is too strong before the next one comes",
}


def on_a_real_radio(caps: CapsConfig) -> dict[str, float]:
    """The ``[caps]`` settings with a floor, as the governor applies them on a real
    radio (:meth:`Limits.with_floors`; a virtual massager takes them as written)."""
    c = caps.to_caps()
    floored = Limits(
        intensity_min=0, intensity_max=0, heat_max=0, heat_max_reason="",
        session_s=c.session_s, heat_s=c.heat_s, temperature_c=c.temperature_c,
        clamp=c.clamp, no_heat=c.no_heat, heartbeat_s=c.heartbeat_s,
        ramp_step_s=c.ramp_step_s, cooldown_s=c.cooldown_s,
    ).with_floors()
    return {"cooldown_minutes": floored.cooldown_s / 60,
            "intensity_step_seconds": floored.ramp_step_s}


def floor_notes(caps: CapsConfig) -> dict[str, str]:
    """Each setting written below its floor: what applies instead, and why."""
    notes = {}
    for name, applies in on_a_real_radio(caps).items():
        if applies != getattr(caps, name):
            notes[name] = (f"{getattr(caps, name):g} is below the floor: {applies:g} applies "
                           f"on a real radio ({FLOOR_REASONS[name]}); virtual massagers "
                           "use it as written")
    return notes


def caps_rows(config: Config) -> list[dict[str, Any]]:
    """Each ``[caps]`` setting: its value, the value that applies on a real radio,
    where it comes from, its valid range."""
    rows = []
    applies = on_a_real_radio(config.caps)
    notes = floor_notes(config.caps)
    for name, field in CapsConfig.model_fields.items():
        in_file = name in config.caps.model_fields_set
        value = getattr(config.caps, name)
        rows.append({
            "setting": name,
            "value": value,
            "applies": applies.get(name, value),
            "note": notes.get(name),
            "source": config.where("caps", name) if in_file else "default",
            "default": field.default,
            "range": valid_range(name),
        })
    return rows


def _limit_rows(config: Config, profile_id: str) -> list[dict[str, Any]]:
    profile = get_profile(profile_id, list(config.profile_dirs))
    limits = Limits.compute(profile, config.caps.to_caps())
    real = limits.with_floors()
    caps = config.caps
    hw = profile.capabilities
    intensity_src = "profile range" if caps.max_intensity is None or (
        caps.max_intensity >= hw.intensity.max) else "caps.max_intensity"
    return [
        {"limit": "intensity", "value": f"{limits.intensity_min}-{limits.intensity_max}",
         "source": intensity_src},
        {"limit": "heat level", "value": limits.heat_max, "source": limits.heat_max_reason},
        {"limit": "session minutes", "value": round(limits.session_s / 60, 1),
         "source": "ceiling" if limits.session_s < caps.max_session_minutes * 60 else "caps"},
        {"limit": "heat minutes", "value": round(limits.heat_s / 60, 1),
         "source": "ceiling" if limits.heat_s < caps.max_heat_minutes * 60 else "caps"},
        {"limit": "temperature C", "value": limits.temperature_c,
         "source": "ceiling" if limits.temperature_c < caps.max_temperature_c else "caps"},
        {"limit": "unattended heat level", "value": limits.unattended_heat_level,
         "source": "profile" if limits.unattended_heat_level < caps.unattended_heat_level
         else "caps"},
        {"limit": "cooldown minutes", "value": round(real.cooldown_s / 60, 1),
         "source": "floor (real radio)" if real.cooldown_s > limits.cooldown_s else "caps"},
        {"limit": "ramp seconds/level", "value": round(real.ramp_step_s, 2),
         "source": "floor (real radio)" if real.ramp_step_s > limits.ramp_step_s else "caps"},
    ]


def paths(config: Config | None, flag: str | None) -> list[dict[str, Any]]:
    """Every path footctl reads or writes, the variable that moves it, and whether
    it exists."""
    from footctl.control.sockets import daemon_socket_path  # noqa: PLC0415
    from footctl.scheduler import default_state_path  # noqa: PLC0415

    profile_dirs = [*(config.profile_dirs if config else [])]
    env_dirs = [p for p in os.environ.get(PROFILE_DIR_ENV, "").split(os.pathsep) if p]
    rows: list[tuple[str, Any, str | None]] = [
        ("config file", config_path(flag), f"--config, {CONFIG_ENV}"),
        ("state dir", state_dir(), STATE_DIR_ENV),
        ("crash markers", state_dir() / "active", STATE_DIR_ENV),
        ("scheduler state", default_state_path(), STATE_DIR_ENV),
        ("data dir", data_dir(), DATA_DIR_ENV),
        ("journal", journal_path(), DATA_DIR_ENV),
        ("runtime dir", runtime_dir(), RUNTIME_DIR_ENV),
        ("daemon socket", daemon_socket_path(), RUNTIME_DIR_ENV),
        ("your programs", default_user_dir(), PROGRAM_DIR_ENV),
        ("shipped programs", shipped_programs(), None),
        *[("profiles (config)", p, "profile_dirs") for p in profile_dirs],
        *[("profiles (env)", p, PROFILE_DIR_ENV) for p in env_dirs],
        ("shipped profiles", shipped_dir(), None),
    ]
    return [
        {"what": what, "path": str(path), "exists": os.path.exists(path), "set_by": env}
        for what, path, env in rows
    ]


def show(args: argparse.Namespace, out: Output) -> int:
    """Effective caps with sources and ranges, limits on a massager, and the paths."""
    config = load_config(config_path(args.config))
    caps = caps_rows(config)
    data: dict[str, Any] = {"ok": True, "config_file": str(config_path(args.config)),
                            "caps": caps}
    lines = [f"config file: {config_path(args.config)}"
             + ("" if config.source else " (not there: defaults)"), "", "[caps]"]
    width = max(len(r["setting"]) for r in caps)
    for r in caps:
        value = "none" if r["value"] is None else str(r["value"]).lower()
        lines.append(f"  {r['setting']:<{width}} = {value:<6} {r['source']:<30} "
                     f"valid: {r['range']}"
                     + (f"  (applies: {r['applies']:g} on a real radio, the floor)"
                        if r["note"] else ""))
    profile_id = getattr(args, "profile", None)
    if profile_id:
        limits = _limit_rows(config, profile_id)
        data["limits"] = {"profile": profile_id, "limits": limits}
        lines += ["", f"limits on {profile_id} (min of its range, your caps, the ceilings)"]
        lines += [f"  {r['limit']:<22} {r['value']!s:<8} {r['source']}" for r in limits]
    data["paths"] = paths(config, args.config)
    lines += ["", "paths"]
    lines += [
        f"  {r['what']:<18} {r['path']}" + ("" if r["exists"] else "  (not there)")
        + (f"  [{r['set_by']}]" if r["set_by"] else "")
        for r in data["paths"]
    ]
    out.result(data, "\n".join(lines))
    return ExitCode.OK


def check(args: argparse.Namespace, out: Output) -> int:
    """Every problem in the configuration and the files it leads to; exit 2 if any.
    A file with invalid entries is still checked as far as its valid parts go (their
    profiles, programs, names and schedules), so every problem is listed at once."""
    from footctl.scheduler import audit_config  # noqa: PLC0415

    problems: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    path = config_path(args.config)
    config: Config | None = None
    salvaged: Salvaged | None = None
    if args.config and not path.exists():
        problems.append({"file": str(path), "line": None, "field": "<file>",
                         "reason": "no such file"})
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems += [{"file": str(p.file), "line": p.line, "field": p.field, "reason": p.reason}
                     for p in exc.problems] or [{"file": str(path), "line": None,
                                                 "field": "<file>", "reason": exc.message}]
        salvaged = salvage_config(path)
    else:
        salvaged = Salvaged(config, list(config.devices), list(config.schedules))
    dirs = list(salvaged.config.profile_dirs) if salvaged else []
    profiles, bad_profiles = scan_profiles(dirs)
    catalog = scan_programs(default_user_dir())
    problems += [{"file": str(p.file), "line": p.line, "field": p.field, "reason": p.reason}
                 for p in bad_profiles]
    problems += [{"file": str(p.file), "line": p.line, "field": p.field, "reason": p.reason,
                  "step": p.step} for p in catalog.problems]
    if salvaged is not None:
        problems += _device_problems(salvaged, sorted(profiles))
        warnings += [{"file": str(path), "line": _line(salvaged.config, "caps", name),
                      "field": f"caps.{name}", "reason": note}
                     for name, note in floor_notes(salvaged.config.caps).items()]
        try:
            audit = audit_config(salvaged.config, datetime.now(UTC),
                                 schedules=salvaged.schedules, quiet=True)
        except FootctlError as exc:
            audit = []
            problems.append({"file": str(path), "line": None, "field": "schedules",
                             "reason": str(exc)})
        for item in audit:
            row = {"file": str(salvaged.config.source or path),
                   "line": _line(salvaged.config, item.index),
                   "field": f"schedules[{item.index}]", "reason": item.message}
            (problems if item.error else warnings).append(row)
    lines = [_where(p) + f"{p['field']}: {p['reason']}" for p in problems]
    lines += ["warning: " + _where(w) + f"{w['field']}: {w['reason']}" for w in warnings]
    ok = not problems
    if problems:
        summary = f"{path}: {len(problems)} problem(s)"
    elif config is not None and config.source is None:
        summary = f"{path}: not there (defaults)"
    else:
        summary = f"{path}: ok"
    text = "\n".join([summary, *lines] if lines else [summary, "no problems found"])
    out.result({"ok": ok, "config_file": str(path), "problems": problems,
                "warnings": warnings}, text)
    return ExitCode.OK if ok else ExitCode.USAGE


def _device_problems(salvaged: Salvaged, known: list[str]) -> list[dict[str, Any]]:
    """Each ``[[devices]]`` entry whose profile does not exist, or whose name or
    address an earlier entry already has (``--device NAME`` would be ambiguous)."""
    config = salvaged.config
    problems: list[dict[str, Any]] = []

    def row(index: int, field: str, reason: str) -> dict[str, Any]:
        return {"file": str(config.source), "line": _line(config, "devices", index, field),
                "field": f"devices[{index}].{field}", "reason": reason}

    first: dict[tuple[str, str], int] = {}
    for index, dev in enumerate(salvaged.devices):
        if dev is None:
            continue
        if dev.profile not in known:
            problems.append(row(index, "profile",
                                f"no profile {dev.profile!r} (known: {', '.join(known)})"))
        for field, value in (("name", dev.name), ("address", dev.address)):
            if value is None:
                continue
            earlier = first.setdefault((field, value.lower()), index)
            if earlier != index:
                problems.append(row(index, field, f"{value!r} is also the {field} of "
                                                  f"devices[{earlier}]; each must be unique"))
    return problems


def _line(config: Config, *loc: str | int) -> int | None:
    """The line of ``loc`` (a schedule's index alone means ``schedules[index]``)."""
    where = config.where(*(("schedules", *loc) if len(loc) == 1 else loc))
    tail = where.rsplit(":", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def _where(p: dict[str, Any]) -> str:
    line = f":{p['line']}" if p.get("line") else ""
    return f"{p['file']}{line}: "
