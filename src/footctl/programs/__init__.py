"""Bedtime programs: the schema, loading, the setpoint timeline and the cap check."""

from footctl.programs.check import Problem, check_against_limits
from footctl.programs.loader import (
    FoundProgram,
    default_user_dir,
    find_programs,
    get_program,
    list_programs,
    load_program,
    load_program_text,
    shipped_dir,
)
from footctl.programs.model import (
    Program,
    ProgramError,
    ProgramProblem,
    Progression,
    Pulse,
    Ramp,
    Step,
    effective_intensity,
    parse_duration,
)
from footctl.programs.timeline import TimedSetpoint, expand, setpoint_at

__all__ = [
    "FoundProgram",
    "Problem",
    "Program",
    "ProgramError",
    "ProgramProblem",
    "Progression",
    "Pulse",
    "Ramp",
    "Step",
    "TimedSetpoint",
    "check_against_limits",
    "default_user_dir",
    "effective_intensity",
    "expand",
    "find_programs",
    "get_program",
    "list_programs",
    "load_program",
    "load_program_text",
    "parse_duration",
    "setpoint_at",
    "shipped_dir",
]
