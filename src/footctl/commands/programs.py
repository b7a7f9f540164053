"""``footctl run``, ``footctl program list`` and ``footctl program check``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from footctl.config import Config
from footctl.devices import controlled_device, resolve_profile
from footctl.errors import ExitCode, SafetyRefused, UsageError
from footctl.guardian import (
    ControlServer,
    Handler,
    ask,
    ask_holder,
    reachable_daemon,
    reachable_guardian,
    socket_path,
)
from footctl.journal import Journal
from footctl.journal_hooks import device_key, open_journal
from footctl.programs.loader import default_user_dir, get_program, list_programs
from footctl.programs.model import Program, Step, effective_intensity
from footctl.programs.runner import Assessment, ProgramRunner, Progress, assess
from footctl.render import mmss, state_payload
from footctl.safety.limits import Limits
from footctl.safety.watchdog import LoopWatchdog
from footctl.schedule import may_start

if TYPE_CHECKING:
    from footctl.cli import Output

# While following a program the daemon runs, ask for its progress this often.
FOLLOW_POLL_S = 1.0

# Run results that are the caps' or a fault's doing, not the user's: exit 4, as a refusal.
SAFETY_ENDS = ("session_cap", "heat_cap", "heartbeat_missed", "over_temperature",
               "unexpected_heat", "cap_expired_while_away")


class ProgressLine:
    """A program's progress on stderr: one redrawn bar on a terminal, else one line
    per step (so logs and tests see each step once)."""

    BAR = 20

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._step: int | None = -1
        self._drawn = 0

    @classmethod
    def line(cls, p: Progress) -> str:
        """The progress as one line of text."""
        done = int(cls.BAR * min(1.0, p.elapsed_s / p.total_s)) if p.total_s else cls.BAR
        bar = "#" * done + "-" * (cls.BAR - done)
        if p.step is None:
            return f"[{bar}] {p.program}: done"
        paused = " (paused)" if p.paused else ""
        return (
            f"[{bar}] {p.program} step {p.step}/{p.steps} {p.step_name}{paused}: "
            f"{mmss(p.step_left_s)} left in step, {mmss(p.left_s)} in all"
        )

    def __call__(self, p: Progress) -> None:
        text = self.line(p)
        if self.tty:
            self.stream.write("\r" + text.ljust(self._drawn))
            self._drawn = len(text)
            self.stream.flush()
        elif p.step != self._step:
            print(text, file=self.stream, flush=True)
        self._step = p.step

    def close(self) -> None:
        """End the bar's line, so what follows starts on its own."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


def _program(args: argparse.Namespace) -> Program:
    return get_program(args.program, default_user_dir())


def _result_text(result: dict[str, Any]) -> str:
    elapsed = float(result["elapsed_s"])
    line = (
        f"{result['program']}: {result['end_reason']} after {result['steps_run']} of "
        f"{result['steps']} steps ({mmss(elapsed)})"
    )
    return line + "".join(f"\nnote: {n}" for n in result.get("notes", []))


def _exit_code(end_reason: str) -> int:
    if end_reason in ("completed", "stopped"):
        return ExitCode.OK
    if end_reason == "link_lost":
        return ExitCode.UNREACHABLE
    if end_reason in SAFETY_ENDS:
        return ExitCode.REFUSED
    return ExitCode.OTHER


def check_start_limits(journal: Journal, config: Config, device: str) -> None:
    """Refuse (SafetyRefused) a program start within the cooldown after the last
    session on ``device``, or past the night's session limit."""
    check = may_start(
        journal.now(),
        journal.last_session_end(device),
        config.caps.cooldown_minutes,
        sessions_tonight=len(journal.sessions_in_night(device=device)),
        max_sessions_per_night=config.caps.max_sessions_per_night,
    )
    if not check.allowed:
        raise SafetyRefused(check.reason or "refused", check.message)


async def run(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run a program now; Ctrl-C stops the massager before exiting."""
    program = _program(args)
    if not args.simulate:
        path = await reachable_daemon()
        if path is not None:
            return await _run_via_daemon(path, args, out)
        if await reachable_guardian(args.device) is not None:
            raise SafetyRefused(
                "busy", "another footctl process holds the massager in a session",
                advice="'footctl stop' ends it; then run the program",
            )
    verbose = (not out.as_json and sys.stderr.isatty()) or args.verbose > 0

    def message(text: str) -> None:
        if verbose:
            print(text, file=sys.stderr, flush=True)

    bar = ProgressLine()
    async with controlled_device(args, config, message) as dev:
        gov, hooks = dev.governor, dev.hooks
        journal = hooks.journal if hooks is not None else None
        nights = journal.completed_nights(program.name) if journal is not None else 0

        def on_progress(p: Progress) -> None:
            if hooks is not None:
                hooks.follow(gov, p)
            bar(p)

        runner = ProgramRunner(gov, program, completed_nights=nights, on_progress=on_progress)
        runner.assessment.raise_if_refused()
        for note in runner.notes:
            print(f"note: {note}", file=sys.stderr, flush=True)
        await dev.session.connect()
        if journal is not None:
            check_start_limits(journal, config, device_key(gov))
        # The runner is the controller here: if it stalls, the heartbeat lapses and
        # the watch turns everything off; a stalled loop ends the process (watchdog).
        watcher = asyncio.create_task(gov.watch(heartbeat=False), name="footctl.run.watch")
        dog = LoopWatchdog(gov.limits.heartbeat_s)
        dog.start()
        # Like a guardian: 'footctl stop' (and status) from another terminal reach us.
        server = None if dev.inprocess else ControlServer(
            socket_path(gov.session.state.address), _guardian_handler(runner)
        )
        try:
            if server is not None:
                await server.start()
            result = await runner.run()
        finally:
            bar.close()
            dog.stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if server is not None:
                await server.close()
            if hooks is not None:
                hooks.forget(gov)
    return _report(out, result.to_dict(), "direct")


def _guardian_handler(runner: ProgramRunner) -> Handler:
    gov = runner.governor

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "ping":
            return {"ok": True}
        if cmd in ("stop", "off"):
            await gov.stop(source="cli", reason="stopped")
        elif cmd != "status":
            raise SafetyRefused(
                "busy", f"program {runner.program.name} is running",
                advice="'footctl stop' ends it first",
            )
        payload = state_payload(gov, gov.session.state, "guardian")
        running = runner.progress is not None and not gov.ended.is_set()
        payload["program"] = runner.progress.to_dict() if running and runner.progress else None
        return payload

    return handle


def _report(out: Output, result: dict[str, Any], via: str) -> int:
    out.result({"ok": True, "via": via, **result}, _result_text(result))
    return _exit_code(str(result["end_reason"]))


async def _run_via_daemon(path: Path, args: argparse.Namespace, out: Output) -> int:
    ref = args.program
    if ref.endswith(".toml") or "/" in ref:
        ref = str(Path.cwd() / ref)  # the daemon has its own working directory
    base: dict[str, Any] = {"device": args.device} if args.device else {}
    reply = await ask_holder(path, {"cmd": "run", "program": ref, **base})
    if not reply.get("ok"):
        message = str(reply.get("message", "refused"))
        out.error({k: v for k, v in reply.items() if k != "ok"}, message)
        return int(reply.get("exit_code", ExitCode.OTHER))
    print(f"running {reply.get('started')} in the footctl daemon", file=sys.stderr, flush=True)
    for note in reply.get("notes", []):
        print(f"note: {note}", file=sys.stderr, flush=True)
    bar = ProgressLine()
    status = reply
    try:
        while isinstance(status.get("program"), dict):
            bar(_progress(status["program"]))
            await asyncio.sleep(FOLLOW_POLL_S)
            status = await ask_holder(path, {"cmd": "status", **base})
    except asyncio.CancelledError:
        bar.close()
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            await ask(path, {"cmd": "stop", **base})
        raise
    bar.close()
    last = status.get("last_run")
    if not isinstance(last, dict):
        raise UsageError("the daemon reports no result for the program")
    return _report(out, last, "daemon")


def _progress(data: dict[str, Any]) -> Progress:
    keys = ("program", "step", "steps", "step_name", "elapsed_s", "total_s", "step_left_s",
            "paused")
    return Progress(**{k: data[k] for k in keys})


# --- program list / check ----------------------------------------------------------


def list_(out: Output) -> int:
    """The shipped and the user's programs."""
    rows: list[dict[str, Any]] = []
    for found in list_programs(default_user_dir()):
        p = found.program
        rows.append({
            "name": p.name, "description": p.description, "duration_s": p.duration_s,
            "steps": len(p.steps), "max_heat": max(s.heat for s in p.steps),
            "progressive": p.progression is not None, "shipped": found.shipped,
            "path": str(found.path),
        })
    lines = [
        f"{r['name']:<16} {mmss(r['duration_s']):>6}  {r['steps']} steps  heat <= {r['max_heat']}"
        f"  {'shipped' if r['shipped'] else 'yours  '}  {r['description']}"
        for r in rows
    ]
    out.result({"ok": True, "programs": rows}, "\n".join(lines) or "no programs")
    return ExitCode.OK


def _intensity_text(program: Program, step: Step, nights: int) -> str:
    asked = (
        f"{step.ramp.from_intensity}->{step.ramp.to_intensity}"
        if step.ramp is not None
        else str(step.intensity)
    )
    tonight = effective_intensity(program, step, nights)
    if tonight < step.peak_intensity:
        asked += f" (at most {tonight} tonight)"
    return asked


def check(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Each step as the caps of one massager treat it; exit 4 if any is refused."""
    program = _program(args)
    profile = resolve_profile(args, config)
    if profile is None:
        raise UsageError(
            "which massager? the caps depend on it",
            advice="pass --profile ID or --simulate ID, or configure one [[devices]]",
        )
    limits = Limits.compute(profile, config.caps.to_caps())
    journal = open_journal()
    try:
        nights = journal.completed_nights(program.name) if journal is not None else 0
    finally:
        if journal is not None:
            journal.close()
    assessment = assess(program, profile, limits, unattended=args.scheduled,
                        completed_nights=nights)
    program = assessment.resolved or program  # modes and levels as they run on this device
    payload = _check_payload(program, assessment, profile.id, nights, args.scheduled)
    out.result(payload, _check_text(program, assessment, profile.id, nights))
    if assessment.refused:
        print(f"footctl: program {program.name!r} refused on {profile.id}: "
              f"{len(assessment.refused)} problem(s)", file=sys.stderr)
        return ExitCode.REFUSED
    return ExitCode.OK


def _check_payload(
    program: Program, assessment: Assessment, profile_id: str, nights: int, scheduled: bool
) -> dict[str, Any]:
    steps = []
    for number, step in enumerate(program.steps, start=1):
        steps.append({
            "step": number, "name": step.label, "duration_s": step.duration_s,
            "mode": step.mode, "intensity": effective_intensity(program, step, nights),
            "heat": step.heat, "zone": step.zone,
            "findings": [f.to_dict() for f in assessment.findings if f.step == number],
        })
    return {
        "ok": not assessment.refused,
        "program": program.name,
        "profile": profile_id,
        "scheduled": scheduled,
        "completed_nights": nights,
        "duration_s": program.duration_s,
        "steps": steps,
        "program_findings": [f.to_dict() for f in assessment.findings if f.step is None],
        "refused": [f.to_dict() for f in assessment.refused],
        "clamped": [f.to_dict() for f in assessment.clamped],
    }


def _check_text(program: Program, assessment: Assessment, profile_id: str, nights: int) -> str:
    lines = [
        f"{program.name} on {profile_id}: {mmss(program.duration_s)}, {len(program.steps)} "
        f"steps, {nights} completed night(s)"
    ]
    lines += [f"   {f}" for f in assessment.findings if f.step is None]
    for number, step in enumerate(program.steps, start=1):
        findings = [f for f in assessment.findings if f.step == number]
        verdict = "ok" if not findings else ("REFUSED" if any(
            f.action == "refused" for f in findings) else "clamped")
        lines.append(
            f"{number:>2} {mmss(step.duration_s):>6}  {step.label:<24} {step.mode:<10} "
            f"intensity {_intensity_text(program, step, nights)}, heat {step.heat}"
            + (" pulsed" if step.pulse else "") + f"  {verdict}"
        )
        lines += [f"     {f.action}: {f.reason}" for f in findings]
    if assessment.refused:
        lines.append(f"refused: {len(assessment.refused)} problem(s); the program will not start")
    elif assessment.clamped:
        lines.append(f"runs with {len(assessment.clamped)} step(s) lowered by the caps")
    else:
        lines.append("runs as written")
    return "\n".join(lines)
