"""The control API: the one language every command source speaks to an owner.

Version 1. Requests, replies, errors and events are pydantic models with
``extra="forbid"`` and strict types (no bools for ints, no strings for numbers, no
NaN or infinities), with ranges checked. A request is validated exactly once, where
it enters the owner (the socket, the MQTT bridge, the TUI, the scheduler); what goes
further inward is a typed model, never a dict.

On the wire (the owner's Unix socket) each message is one JSON object on one line:

- request: ``{"v": 1, "kind": "set", "source": "cli", "device": "A", "intensity": 3}``
- reply: ``{"v": 1, "ok": true, "devices": [DeviceView, ...], "notes": [...]}``
- error: ``{"v": 1, "ok": false, "error": "refused", "reason": "heat_above_cap",
  "message": "...", "advice": "...", "exit_code": 4}``
- events after a ``watch`` request: ``{"v": 1, "event": "state", "seq": N,
  "device": DeviceView}``, one per change, until the client closes.

The thin CLI client builds these lines with the standard library only (no pydantic:
``footctl status`` must start as fast as ``python -c pass``); the owner parses them
here with :func:`parse_request`.

Within version 1 the API grows only by additions, each listed in README.md ("Control
API", "Changes within version 1"), which a reader must be ready for: a new request
kind, a new field, or a new value of a field it reads (a session's source may be
``device``: :data:`SessionSource`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from footctl.errors import UsageError

if TYPE_CHECKING:
    from footctl.device.profile.schema import Profile as ProfileLike
    from footctl.safety.limits import Limits as LimitsLike

API_VERSION = 1

# A request line larger than this is not a footctl client (the biggest legitimate
# request, a program name plus a device name, is a few hundred bytes).
MAX_REQUEST_BYTES = 16 * 1024

# Ranges checked at the edge, before the device's own (profile) ranges and the
# caps. No massager has more than 255 intensity levels, 15 heat levels or 255 zones;
# a value past these is a malformed request, not one the governor should weigh.
MAX_WIRE_LEVEL = 255
MAX_WIRE_HEAT = 15
MAX_NAME_LEN = 64
# A program is named, or given as a .toml file path (Linux's PATH_MAX).
MAX_PROGRAM_REF_LEN = 4096
# A remote lease longer than the design's dead-man heartbeat ceiling would let a
# vanished hub keep heat on; shorter than a few seconds is a client bug.
MIN_LEASE_S = 5.0
MAX_LEASE_S = 600.0

# Who sends a request. A client names its own; the edge refuses anything else.
Source = Literal["cli", "tui", "mqtt", "schedule", "program"]
SOURCES: tuple[str, ...] = get_args(Source)
# Who started a session, as the owner reports it (session events, a view's
# session_source, the journal, the MQTT state): a request's source, or "device" for a
# session the massager's own power button started. Never a request's source: no client
# may claim a press of the massager's own button.
SessionSource = Literal["cli", "tui", "mqtt", "schedule", "program", "device"]
SESSION_SOURCES: tuple[str, ...] = get_args(SessionSource)

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
ProgramRef = Annotated[str, Field(min_length=1, max_length=MAX_PROGRAM_REF_LEN)]
Level = Annotated[int, Field(ge=0, le=MAX_WIRE_LEVEL)]
HeatLevel = Annotated[int, Field(ge=0, le=MAX_WIRE_HEAT)]


class _Model(BaseModel):
    """Strict, closed, immutable, finite."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Request(_Model):
    v: Literal[1] = 1
    source: Source = "cli"


# --- requests -----------------------------------------------------------------------------


class PingRequest(_Request):
    """Is an owner there? Answered with the massagers it holds."""

    kind: Literal["ping"] = "ping"


class StatusRequest(_Request):
    """The state of one massager (``device``) or of all the owner holds."""

    kind: Literal["status"] = "status"
    device: Name | None = None


class StopRequest(_Request):
    """Everything off on ``device``, or on every massager the owner holds (None).

    Never deduplicated, never rate-limited; it preempts pending connects and applies,
    and what cannot be written yet is written first when the link returns."""

    kind: Literal["stop"] = "stop"
    device: Name | None = None


class SetRequest(_Request):
    """Switch on (``kind="on"``) or change settings (``kind="set"``, at least one field).

    ``None`` leaves a field as it is. The owner's governor then checks the values
    against the device's ranges and the caps."""

    kind: Literal["set", "on"] = "set"
    device: Name | None = None
    intensity: Level | None = None
    heat: HeatLevel | None = None
    mode: Name | None = None
    zone: Level | None = None

    def model_post_init(self, context: Any, /) -> None:
        """``set`` must change something; ``on`` may not carry a field it ignores."""
        del context
        fields = (self.intensity, self.heat, self.mode, self.zone)
        if self.kind == "set" and all(f is None for f in fields):
            raise ValueError("set needs at least one of intensity, heat, mode, zone")


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"no time zone {name!r} (an IANA name such as Europe/Berlin)") from exc
    return name


ZoneName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN), AfterValidator(_known_zone)]


class RunRequest(_Request):
    """Start a program now (``source="program"`` unless a schedule started it).

    ``tz``, the time zone of the schedule that starts it, says where a night runs
    from noon to noon (for the night's start limit and a progression's nights);
    None: the owner's local zone."""

    kind: Literal["run"] = "run"
    device: Name | None = None
    program: ProgramRef
    tz: ZoneName | None = None

    def zone(self) -> tzinfo | None:
        """``tz`` as a zone (None: the owner's local zone)."""
        return None if self.tz is None else ZoneInfo(self.tz)


class LeaseRequest(_Request):
    """A remote source (MQTT, the TUI) renews its hold on running massagers: while it
    holds a lease and stops renewing it, the dead-man rule switches them off.

    ``seconds`` is how long one renewal holds (None: the owner's heartbeat length);
    there is no zero or negative lease: a source hands its hold back with
    :class:`ReleaseRequest`. A lease guards a running session only (see
    :meth:`footctl.safety.governor.SafetyGovernor.release`)."""

    kind: Literal["lease"] = "lease"
    device: Name | None = None
    seconds: Annotated[float, Field(ge=MIN_LEASE_S, le=MAX_LEASE_S)] | None = None


class ReleaseRequest(_Request):
    """The source hands its lease on ``device`` (or on every massager) back: what runs
    goes on under the caps, and no longer stops when that source goes quiet (the
    TUI's quit from a daemon, the MQTT bridge's clean shutdown)."""

    kind: Literal["release"] = "release"
    device: Name | None = None


class WatchRequest(_Request):
    """Stream one event per state change (``device`` or all) until the client closes.
    The current state of each massager comes first."""

    kind: Literal["watch"] = "watch"
    device: Name | None = None


class SchedulesRequest(_Request):
    """The owner's schedules and their next starts (daemon only)."""

    kind: Literal["schedules"] = "schedules"


class DescribeRequest(_Request):
    """What one massager (``device``) or each one can do within the caps, for a
    source that builds controls (Home Assistant discovery, the TUI). Answered with
    :attr:`Reply.caps`."""

    kind: Literal["describe"] = "describe"
    device: Name | None = None


# --- scan: what an owner's radios hear --------------------------------------------------

# How long a scan listens. A massager advertises every 20 ms to about 1 s, so half a
# second hears those close by; past a minute a person at a prompt has given up, and a
# client waits the whole time plus SCAN_MARGIN_S.
MIN_SCAN_S = 0.5
MAX_SCAN_S = 60.0
DEFAULT_SCAN_S = 5.0  # the CLI's `scan --timeout` default
# Besides the listening itself, a scan reply costs reading the profiles and starting
# and stopping each radio's scanner: far less than this, which a client adds to
# ``seconds`` before it gives up on the owner.
SCAN_MARGIN_S = 10.0


class ScanRequest(_Request):
    """Listen for ``seconds`` on every radio the owner holds massagers on (virtual
    and real); answered with :attr:`Reply.seen`. Listening drives no massager.
    ``profile``: only what that profile recognises (a profile id)."""

    kind: Literal["scan"] = "scan"
    seconds: Annotated[float, Field(ge=MIN_SCAN_S, le=MAX_SCAN_S)] = DEFAULT_SCAN_S
    profile: Name | None = None


class ScanResult(_Model):
    """One device a scan heard: which shipped profile recognises it (or why none
    does, in ``reason``), the radio that heard it, and whether the owner that
    scanned already holds it (``device_id`` then names it)."""

    address: str
    name: str | None = None
    rssi: int
    service_uuids: tuple[str, ...] = ()
    manufacturer_ids: tuple[int, ...] = ()
    profile: str | None = None
    reason: str = ""
    radio: str = "bluetooth"
    held: bool = False
    device_id: str | None = None


Request = Annotated[
    PingRequest
    | StatusRequest
    | StopRequest
    | SetRequest
    | RunRequest
    | LeaseRequest
    | ReleaseRequest
    | WatchRequest
    | SchedulesRequest
    | DescribeRequest
    | ScanRequest,
    Field(discriminator="kind"),
]

_REQUEST = TypeAdapter[Request](Request)


def parse_request(data: bytes | str | dict[str, Any]) -> Request:
    """Validate one request (a JSON line, or a decoded object from MQTT or a test).

    Raises :class:`UsageError` listing every problem (field and reason); nothing
    unvalidated gets past this point."""
    try:
        if isinstance(data, dict):
            # Python objects are checked as strictly as JSON: a bool is not an int.
            return _REQUEST.validate_python(data)
        if isinstance(data, bytes) and len(data) > MAX_REQUEST_BYTES:
            raise UsageError(f"request too long ({len(data)} bytes, at most {MAX_REQUEST_BYTES})")
        return _REQUEST.validate_json(data)
    except ValidationError as exc:
        raise UsageError(describe_errors(exc), advice="see README.md, 'Control API'") from exc


def describe_errors(exc: ValidationError) -> str:
    """Every problem of a validation error, as ``field: reason`` joined by ``; ``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# --- replies and events -------------------------------------------------------------------

LinkState = Literal["connected", "connecting", "lost", "idle"]


class Settings(_Model):
    """Power, intensity, heat, mode and zone: reported by the device, or desired."""

    power: bool = False
    intensity: int | None = None
    heat: int = 0
    heat_celsius: float | None = None
    mode: str | None = None
    zone: int | None = None


class Timers(_Model):
    """Seconds left before a safety limit acts (None: not running)."""

    session_left_s: float | None = None
    heat_left_s: float | None = None
    lease_left_s: float | None = None
    cooldown_left_s: float | None = None


class ProgramView(_Model):
    """A running program: which step, and how long is left."""

    program: str
    source: Source
    step: int | None
    steps: int
    step_name: str
    step_left_s: float
    left_s: float
    paused: bool = False


class RunView(_Model):
    """How the last program run on a massager ended."""

    program: str
    source: str
    end_reason: str
    steps_run: int
    steps: int
    elapsed_s: float
    notes: tuple[str, ...] = ()


class DeviceView(_Model):
    """Everything an owner knows of one massager: the StateHub's unit of change.

    ``reported`` is what the device said (``assumed`` marks values that come from what
    was written, not from a report); ``desired`` is what the governor is driving it
    to. ``seq`` grows by one with every change of this massager."""

    device_id: str
    address: str
    name: str
    profile: str
    simulated: bool = False
    radio: str = "bluetooth"
    link: LinkState = "idle"
    rssi: int | None = None
    reconnect_attempts: int = 0
    reported: Settings = Settings()
    assumed: bool = True
    temperature: float | None = None
    timer_minutes: int | None = None
    desired: Settings = Settings()
    program: ProgramView | None = None
    timers: Timers = Timers()
    session_source: SessionSource | None = None
    last_refusal: str | None = None
    fault: str | None = None
    end_reason: str | None = None
    last_run: RunView | None = None
    owner_pid: int = 0
    seq: int = 0


class HeatLevelView(_Model):
    """One heat level and the temperature it means."""

    level: int
    celsius: float


class DeviceCaps(_Model):
    """What a massager can be asked for, after the caps: the effective intensity
    range, the heat levels at or below the temperature cap (none under ``no_heat``),
    its modes, its zones (None: it has none) and the programs it may run."""

    device_id: str
    profile: str
    profile_name: str = ""
    intensity_min: int
    intensity_max: int
    heat_levels: tuple[HeatLevelView, ...] = ()
    modes: tuple[str, ...] = ()
    zone_min: int | None = None
    zone_max: int | None = None
    programs: tuple[str, ...] = ()


def device_caps(
    device_id: str, profile: ProfileLike, limits: LimitsLike, programs: Sequence[str] = ()
) -> DeviceCaps:
    """A :class:`DeviceCaps` from a profile and its effective limits (the owner
    answers :class:`DescribeRequest` with this)."""
    caps = profile.capabilities
    zones = caps.zones
    return DeviceCaps(
        device_id=device_id,
        profile=profile.id,
        profile_name=profile.name,
        intensity_min=limits.intensity_min,
        intensity_max=limits.intensity_max,
        heat_levels=tuple(
            HeatLevelView(level=h.level, celsius=float(h.celsius))
            for h in caps.heat_levels
            if h.level <= limits.heat_max
        ),
        modes=tuple(m.name for m in caps.modes),
        zone_min=None if zones is None else zones.min,
        zone_max=None if zones is None else zones.max,
        programs=tuple(programs),
    )


class ScheduleView(_Model):
    """One schedule of the daemon and its next start."""

    index: int
    description: str
    program: str
    device: str | None = None
    next_at: str | None = None
    next_local: str | None = None
    last_checked: str | None = None


class StopOwed(_Model):
    """A massager a stop reached but could not switch off yet (no link, no answer):
    its off is owed, written first when the link returns."""

    device_id: str
    name: str
    reason: str

    @property
    def note(self) -> str:
        """How a person reads it."""
        return (f"{self.name}: everything off not confirmed yet ({self.reason}); "
                "it is written first when the link returns")


class Reply(_Model):
    """A successful answer: the state of the massagers the request concerned."""

    v: Literal[1] = 1
    ok: Literal[True] = True
    devices: tuple[DeviceView, ...] = ()
    caps: tuple[DeviceCaps, ...] = ()
    notes: tuple[str, ...] = ()
    started: str | None = None
    schedules: tuple[ScheduleView, ...] = ()
    seen: tuple[ScanResult, ...] = ()  # a ScanRequest's answer
    owed: tuple[StopOwed, ...] = ()  # a StopRequest's massagers not switched off yet
    owner_pid: int = 0
    daemon: bool = False


class ErrorReply(_Model):
    """A refused or failed request. ``exit_code`` is the CLI's (2 bad input, 3 device
    not found or unreachable, 4 refused by safety, 1 other); ``reason`` is the
    governor's stable code for a refusal (``heat_above_cap``, ``cooldown``, ...)."""

    v: Literal[1] = 1
    ok: Literal[False] = False
    error: str
    message: str
    advice: str | None = None
    reason: str | None = None
    exit_code: int = 1
    device: str | None = None


class StateEvent(_Model):
    """One change of one massager, in ``seq`` order per massager."""

    v: Literal[1] = 1
    event: Literal["state"] = "state"
    seq: int
    device: DeviceView


# --- session events -----------------------------------------------------------------------

SessionPhase = Literal["started", "progress", "ended"]


class SessionEvent(_Model):
    """A governed session on one massager started, moved on (its heat so far, every
    few seconds while it runs, and each program step), or ended (with the governor's
    reason). Unlike views these are never coalesced or dropped: the journal writes one
    row per session from them (see :meth:`footctl.control.hub.StateHub.sessions`).

    ``source`` is the source of the request that switched the massager on (a program
    run is ``program``, or ``schedule`` when a schedule started it, whoever asked for
    the run), or ``device`` when the massager's own power button did;
    ``journal_device`` is what the journal calls the massager (its address in capitals,
    else its profile id); ``number`` counts this owner's sessions on the massager;
    ``at`` is the wall-clock time of this phase."""

    v: Literal[1] = 1
    event: Literal["session"] = "session"
    phase: SessionPhase
    device_id: str
    number: int
    journal_device: str
    profile: str
    source: SessionSource
    simulated: bool = False
    program: str | None = None
    steps_run: int = 0
    peak_heat: int = 0
    heat_s: float = 0.0
    at: datetime
    reason: str | None = None
    owner_pid: int = 0


def error_reply(exc: Exception, device: str | None = None) -> ErrorReply:
    """An :class:`ErrorReply` for any of our errors (others are internal errors)."""
    from footctl.errors import FootctlError, SafetyRefused  # noqa: PLC0415 - tiny module

    if isinstance(exc, FootctlError):
        return ErrorReply(
            error=exc.kind,
            message=exc.message,
            advice=exc.advice,
            reason=exc.reason if isinstance(exc, SafetyRefused) else None,
            exit_code=exc.exit_code,
            device=device,
        )
    return ErrorReply(error="internal", message=f"{type(exc).__name__}: {exc}", device=device)
