"""``footctl run``, ``footctl program list`` and ``footctl program check``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from footctl.app import open_owner, progress_printer, request_for
from footctl.client import Printer, run_exit_code
from footctl.config import Config
from footctl.control.api import Reply
from footctl.devices import resolve_profile
from footctl.errors import ExitCode, UsageError
from footctl.journal_hooks import open_journal
from footctl.programs.loader import default_user_dir, get_program, scan_programs
from footctl.programs.model import Program, Step, effective_intensity
from footctl.programs.runner import Assessment, Finding, Progress, assess
from footctl.render import mmss
from footctl.safety.limits import Limits
from footctl.safety.watchdog import LoopWatchdog

if TYPE_CHECKING:
    from footctl.cli import Output


# Off a terminal (journald, a log file), a program's progress is logged at each step
# change and, within a long step, at most this often: one line a minute is a trail a
# reader can follow, not a flood.
PROGRAM_LOG_INTERVAL_S = 60.0


class ProgressLine:
    """A program's progress on stderr: one redrawn bar on a terminal, else one line
    per step change and one every :data:`PROGRAM_LOG_INTERVAL_S` within a step."""

    BAR = 20

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval_s: float = PROGRAM_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._step: int | None = -1
        self._drawn = 0
        self._interval_s = interval_s
        self._clock = clock
        self._logged_at: float | None = None

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
        else:
            now = self._clock()
            due = self._logged_at is None or now - self._logged_at >= self._interval_s
            if p.step != self._step or due:
                print(text, file=self.stream, flush=True)
                self._logged_at = now
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


async def run(args: argparse.Namespace, config: Config, out: Output) -> int:
    """Run a program now, this process as the owner (no other owner holds the
    massager); Ctrl-C stops the massager before exiting."""
    _program(args)  # a bad name is a usage error before anything connects
    request = request_for(args)
    bar = ProgressLine()
    async with contextlib.AsyncExitStack() as stack:
        owner = await open_owner(stack, args, config, progress_printer(args, out))
        held = owner.pick(args.device)
        # 'footctl stop' and status from another terminal, as the README promises; a
        # virtual massager of --simulate too (else a stop from elsewhere answered "off"
        # about another massager while the program went on).
        await owner.serve()
        stream = owner.subscribe(held.device_id)
        reply = await owner.request(request)
        if not isinstance(reply, Reply):
            stream.close()
            return Printer(out.as_json).error(json.loads(reply.model_dump_json()))
        for note in reply.notes:
            print(f"note: {note}", file=sys.stderr, flush=True)
        dog = LoopWatchdog(held.governor.limits.heartbeat_s)
        dog.start()
        try:
            while held.program_running:
                await stream.get()
                if held.runner is not None and held.runner.progress is not None:
                    bar(held.runner.progress)
        finally:
            stream.close()
            bar.close()
            dog.stop()
        result = held.last_result
    if result is None:
        raise UsageError("the program left no result")
    data = result.to_dict()
    out.result({"ok": True, "via": "direct", **data}, _result_text(data))
    return run_exit_code(result.end_reason)


# --- program list / check ----------------------------------------------------------


def list_(out: Output) -> int:
    """The shipped and the user's programs."""
    rows: list[dict[str, Any]] = []
    catalog = scan_programs(default_user_dir())
    for problem in catalog.problems:
        print(f"footctl: skipped an invalid program file: {problem}", file=sys.stderr)
    for found in catalog.programs:
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
    skipped = [
        {"file": str(p.file), "line": p.line, "step": p.step, "field": p.field, "reason": p.reason}
        for p in catalog.problems
    ]
    out.result({"ok": True, "programs": rows, "skipped": skipped},
               "\n".join(lines) or "no programs")
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
        "adapted": [f.to_dict() for f in _adapted(assessment)],
    }


def _adapted(assessment: Assessment) -> list[Finding]:
    """Findings where the program was made concrete for the device (a mode of its
    family, a level from a percentage): it runs as meant, nothing lowered."""
    return [f for f in assessment.findings if f.action == "adapted"]


def _verdict(findings: list[Finding]) -> str:
    """One step's verdict: the strongest of its findings' actions."""
    actions = {f.action for f in findings}
    for action, word in (("refused", "REFUSED"), ("clamped", "clamped"), ("adapted", "adapted")):
        if action in actions:
            return word
    return "ok"


def _steps(findings: list[Finding]) -> str:
    """How many steps ``findings`` touch, in words (``2 step(s)``)."""
    return f"{len({f.step for f in findings if f.step is not None})} step(s)"


def _check_text(program: Program, assessment: Assessment, profile_id: str, nights: int) -> str:
    lines = [
        f"{program.name} on {profile_id}: {mmss(program.duration_s)}, {len(program.steps)} "
        f"steps, {nights} completed night(s)"
    ]
    lines += [f"   {f}" for f in assessment.findings if f.step is None]
    for number, step in enumerate(program.steps, start=1):
        findings = [f for f in assessment.findings if f.step == number]
        verdict = _verdict(findings)
        lines.append(
            f"{number:>2} {mmss(step.duration_s):>6}  {step.label:<24} {step.mode:<10} "
            f"intensity {_intensity_text(program, step, nights)}, heat {step.heat}"
            + (" pulsed" if step.pulse else "") + f"  {verdict}"
        )
        lines += [f"     {f.action}: {f.reason}" for f in findings]
    adapted = _adapted(assessment)
    fitted = f"; {_steps(adapted)} adapted to {profile_id}" if adapted else ""
    if assessment.refused:
        lines.append(f"refused: {len(assessment.refused)} problem(s); the program will not start")
    elif assessment.clamped:
        lines.append(f"runs with {_steps(assessment.clamped)} lowered by the caps{fitted}")
    elif adapted:
        lines.append(f"runs with {_steps(adapted)} adapted to {profile_id} "
                     "(nothing lowered by the caps)")
    else:
        lines.append("runs as written")
    return "\n".join(lines)
