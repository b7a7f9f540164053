"""The session journal: every session in SQLite, with how it ended and a sleep rating.

One file (path passed in; the CLI puts it in the user data dir), WAL mode so the CLI
can read and rate while the daemon writes, and a ``schema_version`` table with
numbered migrations. Times are stored as UTC ISO 8601 strings; the API takes and
returns aware datetimes, and every "now" can be injected.

A row that was started but never ended is the crash-recovery marker: on start-up the
governor ends it as ``recovered_after_crash`` after making the device safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from footctl.errors import FootctlError, UsageError
from footctl.schedule import local_zone, night_bounds, night_of

# Who started the session: the control API's session sources
# (footctl.control.api.SESSION_SOURCES): the source of the request, or "device" for a
# session the massager's own power button started (since schema 5; such sessions were
# journaled as "cli" before). "manual" is what rows written before schema 4 say for the
# CLI and the TUI alike: such rows stay as they are, and read (and are shown) as "manual".
Source = Literal["cli", "tui", "mqtt", "schedule", "program", "device", "manual"]
EndReason = Literal[
    "completed",
    "stopped",
    "cap",
    "link_lost",
    "cap_expired_while_away",
    "recovered_after_crash",
    "skipped",
    "refused",
]
SOURCES: tuple[str, ...] = get_args(Source)
# The sources schema 1 to 3 allowed (migration 1 is frozen with them).
_V1_SOURCES = ("manual", "schedule", "mqtt", "program")
END_REASONS: tuple[str, ...] = get_args(EndReason)
# Rows with these reasons record a start that never happened; they are not sessions
# the user felt, so they are not counted, rated or plotted.
NOT_RUN: tuple[str, ...] = ("skipped", "refused")
# Sessions a program started (by hand with `footctl run`, or by a schedule): these
# count toward max_sessions_per_night. Sessions by hand (cli, tui, the massager's own
# button, old "manual" rows) and MQTT ones have their own budget (the cooldown), so two
# quick tests by hand do not refuse the bedtime program.
PROGRAM_SOURCES: tuple[Source, ...] = ("program", "schedule")

# Sleep rating scale: 1 (bad night) to 5 (great night).
RATING_MIN, RATING_MAX = 1, 5

# The CLI (rate, history) and the daemon share the file; a writer holds the lock for
# milliseconds, so waiting this long is generous and still fails before a user gives up.
BUSY_TIMEOUT_MS = 5000

# A rating describes last night's sleep: a session that ended longer ago than this is
# not "last night", and rating it is almost surely a mistake.
RATE_WINDOW = timedelta(hours=24)

# Frozen for migration 4 (a later change to the sources or reasons is a new migration).
_V4_SOURCES = ("cli", "tui", "mqtt", "schedule", "program", "manual")
# Frozen for migration 5.
_V5_SOURCES = ("cli", "tui", "mqtt", "schedule", "program", "device", "manual")
_V1_END_REASONS = (
    "completed", "stopped", "cap", "link_lost", "cap_expired_while_away",
    "recovered_after_crash", "skipped", "refused",
)
_V3_COLUMNS = (
    "id, started_at, ended_at, device, profile_id, source, program, steps_run, "
    "peak_heat, heat_s, end_reason, rating, note, pid, ended_by, simulated"
)

# Each migration is a list of statements, applied in one transaction; never edit a
# released one, add the next. The schema version is kept in the ``schema_version``
# table, and mirrored in ``PRAGMA user_version`` for tools that look there.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            f"""CREATE TABLE sessions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                device TEXT NOT NULL,
                profile_id TEXT,
                source TEXT NOT NULL CHECK (source IN ({", ".join(map(repr, _V1_SOURCES))})),
                program TEXT,
                steps_run INTEGER NOT NULL DEFAULT 0,
                peak_heat INTEGER NOT NULL DEFAULT 0,
                heat_s REAL NOT NULL DEFAULT 0,
                end_reason TEXT CHECK (end_reason IS NULL
                    OR end_reason IN ({", ".join(map(repr, _V1_END_REASONS))})),
                rating INTEGER CHECK (rating IS NULL
                    OR rating BETWEEN {RATING_MIN} AND {RATING_MAX}),
                note TEXT
            )""",
            "CREATE INDEX sessions_started ON sessions (started_at)",
            "CREATE INDEX sessions_program ON sessions (program, end_reason)",
        ),
    ),
    (
        2,
        (
            # The process that holds a running session: crash recovery ends only the
            # rows of processes that are gone.
            "ALTER TABLE sessions ADD COLUMN pid INTEGER",
            # The governor's own word for how the session ended (session_cap,
            # over_temperature, heartbeat_missed, ...), under the coarse end_reason.
            "ALTER TABLE sessions ADD COLUMN ended_by TEXT",
        ),
    ),
    (
        3,
        (
            # 1 for a session on a virtual massager (--simulate, footctl sim): kept out
            # of history, nights, progression and rating unless asked for.
            "ALTER TABLE sessions ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    (
        4,
        (
            # Each row names the source of its request (cli, tui, ...; issue 8) where
            # schema 1 had one "manual" for the CLI and the TUI. SQLite cannot change a
            # CHECK in place: the table is rebuilt with every row (ids included), and
            # the old "manual" rows are kept as they are.
            f"""CREATE TABLE sessions_v4 (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                device TEXT NOT NULL,
                profile_id TEXT,
                source TEXT NOT NULL CHECK (source IN ({", ".join(map(repr, _V4_SOURCES))})),
                program TEXT,
                steps_run INTEGER NOT NULL DEFAULT 0,
                peak_heat INTEGER NOT NULL DEFAULT 0,
                heat_s REAL NOT NULL DEFAULT 0,
                end_reason TEXT CHECK (end_reason IS NULL
                    OR end_reason IN ({", ".join(map(repr, _V1_END_REASONS))})),
                rating INTEGER CHECK (rating IS NULL
                    OR rating BETWEEN {RATING_MIN} AND {RATING_MAX}),
                note TEXT,
                pid INTEGER,
                ended_by TEXT,
                simulated INTEGER NOT NULL DEFAULT 0
            )""",
            f"INSERT INTO sessions_v4 ({_V3_COLUMNS}) SELECT {_V3_COLUMNS} FROM sessions",
            "DROP TABLE sessions",
            "ALTER TABLE sessions_v4 RENAME TO sessions",
            "CREATE INDEX sessions_started ON sessions (started_at)",
            "CREATE INDEX sessions_program ON sessions (program, end_reason)",
        ),
    ),
    (
        5,
        (
            # A session the massager's own power button started is journaled as
            # "device" (it was "cli", a press nobody made). Rebuilt as in migration 4,
            # every row as it is (ids included), and the table's AUTOINCREMENT counter
            # with them: an id whose row was deleted is never given out again. (The
            # table is restated, not built by a helper shared with migration 4: a later
            # edit of such a helper would change a released migration.)
            f"""CREATE TABLE sessions_v5 (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                device TEXT NOT NULL,
                profile_id TEXT,
                source TEXT NOT NULL CHECK (source IN ({", ".join(map(repr, _V5_SOURCES))})),
                program TEXT,
                steps_run INTEGER NOT NULL DEFAULT 0,
                peak_heat INTEGER NOT NULL DEFAULT 0,
                heat_s REAL NOT NULL DEFAULT 0,
                end_reason TEXT CHECK (end_reason IS NULL
                    OR end_reason IN ({", ".join(map(repr, _V1_END_REASONS))})),
                rating INTEGER CHECK (rating IS NULL
                    OR rating BETWEEN {RATING_MIN} AND {RATING_MAX}),
                note TEXT,
                pid INTEGER,
                ended_by TEXT,
                simulated INTEGER NOT NULL DEFAULT 0
            )""",
            f"INSERT INTO sessions_v5 ({_V3_COLUMNS}) SELECT {_V3_COLUMNS} FROM sessions",
            "DELETE FROM sqlite_sequence WHERE name = 'sessions_v5'",
            "INSERT INTO sqlite_sequence (name, seq) "
            "SELECT 'sessions_v5', seq FROM sqlite_sequence WHERE name = 'sessions'",
            "DROP TABLE sessions",
            "ALTER TABLE sessions_v5 RENAME TO sessions",
            "CREATE INDEX sessions_started ON sessions (started_at)",
            "CREATE INDEX sessions_program ON sessions (program, end_reason)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_COLUMNS = _V3_COLUMNS  # (schemas 4 and 5 have the same columns)
# Rows of real massagers only (the default of every view of the user's nights).
_REAL = "simulated = 0"
# Rows of sessions that ran (not a schedule's skipped or refused start).
_RAN = f"end_reason NOT IN ({', '.join(map(repr, NOT_RUN))})"
# The rating's window: ended sessions that ran, ended since ?.
_RATEABLE = f"ended_at IS NOT NULL AND ended_at >= ? AND {_RAN}"


class JournalError(FootctlError):
    """The journal file cannot be used, or a session id is wrong."""

    kind = "journal"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # In UTC before any arithmetic: same-zone arithmetic is wall-clock arithmetic.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("journal times must be timezone-aware")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    # Fixed width (always microseconds, always +00:00) so strings sort as times.
    return _utc(value).isoformat(timespec="microseconds")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class SessionRecord:
    """One journal row. Times are aware UTC datetimes; ``heat_s`` is seconds of heat.
    ``pid`` is the process that ran the session; ``ended_by`` the governor's detailed
    reason under the coarse ``end_reason``; ``simulated`` marks a session on a virtual
    massager."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    device: str
    profile_id: str | None
    source: str
    program: str | None
    steps_run: int
    peak_heat: int
    heat_s: float
    end_reason: str | None
    rating: int | None
    note: str | None
    pid: int | None = None
    ended_by: str | None = None
    simulated: bool = False

    @property
    def finished(self) -> bool:
        """True once the session has an end."""
        return self.ended_at is not None

    @property
    def ran(self) -> bool:
        """True if the device ran (not a skipped or refused start)."""
        return self.end_reason not in NOT_RUN

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, or None while unfinished."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (times as ISO strings)."""
        out = asdict(self)
        out["started_at"] = _iso(self.started_at)
        out["ended_at"] = None if self.ended_at is None else _iso(self.ended_at)
        return out


def _record(row: tuple[Any, ...]) -> SessionRecord:
    """A row in ``_COLUMNS`` order (SQLite already gives ints, floats and strings)."""
    (id_, started, ended, device, profile_id, source, program, steps_run, peak_heat, heat_s,
     end_reason, rating, note, pid, ended_by, simulated) = row
    return SessionRecord(
        id_, datetime.fromisoformat(started), _parse(ended), device, profile_id, source,
        program, steps_run, peak_heat, heat_s, end_reason, rating, note, pid, ended_by,
        bool(simulated),
    )


class Journal:
    """The session journal in one SQLite file, created and migrated on open.

    ``clock`` gives "now" (aware) wherever a method's time argument is left out.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: every statement is its own transaction unless BEGIN is given.
            self._db = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except BaseException as exc:
            self._db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            raise JournalError(
                f"cannot open the journal {path}: {exc}",
                advice="check the path and its permissions, or move a damaged file aside",
            ) from exc

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {self.path} has schema version {current}; this footctl "
                    f"knows up to {SCHEMA_VERSION}",
                    advice="upgrade footctl, or point it at another journal file",
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute(f"PRAGMA user_version = {max(current, SCHEMA_VERSION)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def now(self) -> datetime:
        """The journal's "now" (its injected clock)."""
        return self._clock()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------

    def start_session(
        self,
        device: str,
        *,
        source: Source,
        profile_id: str | None = None,
        program: str | None = None,
        at: datetime | None = None,
        pid: int | None = None,
        simulated: bool = False,
    ) -> int:
        """Record that a session started; returns its id. Until it is ended, the row is
        the crash-recovery marker (``pid``: the process that runs it; ``simulated``: a
        virtual massager's session, left out of the user's nights)."""
        _check_one_of(source, SOURCES, "source")
        cur = self._db.execute(
            "INSERT INTO sessions (started_at, device, profile_id, source, program, pid, "
            "simulated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_iso(at or self._clock()), device, profile_id, source, program, pid,
             int(simulated)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_session(
        self,
        session_id: int,
        *,
        steps_run: int | None = None,
        peak_heat: int | None = None,
        heat_s: float | None = None,
    ) -> None:
        """Record progress. Each value only grows (a late, stale update cannot lower a
        peak or a total); None leaves it as it is."""
        self.get(session_id)
        self._db.execute(
            "UPDATE sessions SET steps_run = MAX(steps_run, COALESCE(?, 0)), "
            "peak_heat = MAX(peak_heat, COALESCE(?, 0)), heat_s = MAX(heat_s, COALESCE(?, 0)) "
            "WHERE id = ?",
            (steps_run, peak_heat, heat_s, session_id),
        )

    def end_session(
        self,
        session_id: int,
        reason: EndReason,
        *,
        at: datetime | None = None,
        steps_run: int | None = None,
        peak_heat: int | None = None,
        heat_s: float | None = None,
        note: str | None = None,
        ended_by: str | None = None,
    ) -> SessionRecord:
        """Record how and when a session ended (``ended_by``: the detailed reason);
        returns the final record. Ending a session twice is an error (the first end is
        the truth)."""
        _check_one_of(reason, END_REASONS, "reason")
        record = self.get(session_id)
        if record.finished:
            raise JournalError(f"session {session_id} already ended ({record.end_reason})")
        self.update_session(session_id, steps_run=steps_run, peak_heat=peak_heat, heat_s=heat_s)
        self._db.execute(
            "UPDATE sessions SET ended_at = ?, end_reason = ?, note = COALESCE(?, note), "
            "ended_by = ? WHERE id = ?",
            (_iso(at or self._clock()), reason, note, ended_by, session_id),
        )
        return self.get(session_id)

    def record_not_run(
        self,
        device: str,
        reason: Literal["skipped", "refused"],
        *,
        source: Source,
        at: datetime,
        program: str | None = None,
        profile_id: str | None = None,
        note: str | None = None,
    ) -> int:
        """Record a start that did not happen (a missed scheduled start, or one the
        governor refused) at the time it was due; returns the row id."""
        if reason not in NOT_RUN:
            raise ValueError(f"reason must be one of {', '.join(NOT_RUN)}")
        _check_one_of(source, SOURCES, "source")
        stamp = _iso(at)
        cur = self._db.execute(
            "INSERT INTO sessions (started_at, ended_at, device, profile_id, source, program, "
            "end_reason, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stamp, stamp, device, profile_id, source, program, reason, note),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def rate_last(
        self,
        rating: int,
        note: str | None = None,
        *,
        now: datetime | None = None,
        include_simulated: bool = False,
    ) -> SessionRecord:
        """Rate the night's sleep (1-5) on the most recent session of a real massager
        (or of any, with ``include_simulated``) that ran and ended within
        :data:`RATE_WINDOW`; a note, if given, replaces the session's note."""
        if isinstance(rating, bool) or not RATING_MIN <= rating <= RATING_MAX:
            raise UsageError(f"a rating is a whole number from {RATING_MIN} to {RATING_MAX}")
        since = _iso(_utc(now or self._clock()) - RATE_WINDOW)
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE {_RATEABLE} "
            f"{'' if include_simulated else f'AND {_REAL} '}"
            "ORDER BY ended_at DESC, id DESC "
            "LIMIT 1",
            (since,),
        ).fetchone()
        if row is None:
            hours = RATE_WINDOW.total_seconds() / 3600
            virtual = 0 if include_simulated else self._db.execute(
                f"SELECT COUNT(*) FROM sessions WHERE {_RATEABLE} AND simulated = 1",
                (since,),
            ).fetchone()[0]
            if virtual:  # say why the sessions just seen do not count
                raise UsageError(
                    f"no session of a real massager ended in the last {hours:g} h to rate "
                    f"({virtual} on virtual massagers did)",
                    advice="--include-simulated rates the latest of those",
                )
            raise UsageError(
                f"no session ended in the last {hours:g} h to rate",
                advice="see `footctl history` for past sessions",
            )
        record = _record(row)
        self._db.execute(
            "UPDATE sessions SET rating = ?, note = COALESCE(?, note) WHERE id = ?",
            (rating, note, record.id),
        )
        return self.get(record.id)

    # --- reading ----------------------------------------------------------------

    def get(self, session_id: int) -> SessionRecord:
        """One session by id."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise JournalError(f"no session {session_id} in the journal")
        return _record(row)

    def _select(self, where: str, params: Iterable[object]) -> list[SessionRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE {where} ORDER BY started_at, id",
            tuple(params),
        ).fetchall()
        return [_record(r) for r in rows]

    def unfinished_sessions(self) -> list[SessionRecord]:
        """Sessions started but never ended: after a crash, the device may still be on."""
        return self._select("ended_at IS NULL", ())

    def history(
        self, days: float, now: datetime | None = None, *, include_simulated: bool = False
    ) -> list[SessionRecord]:
        """Every row (skipped and refused starts too) started in the last ``days`` days
        before ``now``, oldest first; virtual massagers' sessions only if
        ``include_simulated``."""
        if days <= 0:
            raise UsageError("--days must be more than 0")
        end = _utc(now or self._clock())
        where = "started_at >= ? AND started_at <= ?"
        if not include_simulated:
            where += f" AND {_REAL}"
        return self._select(where, (_iso(end - timedelta(days=days)), _iso(end)))

    def completed_nights(
        self, program: str, device: str | None = None, *, zone: tzinfo | None = None
    ) -> int:
        """Distinct nights (noon to noon in ``zone``, default local) with a completed
        session of ``program`` on a real massager (on ``device``, if given): the input
        of a progression (tries on a virtual massager do not move it on)."""
        params: list[object] = [program]
        where = _for_device(
            f"program = ? AND end_reason = 'completed' AND {_REAL}", params, device
        )
        zone_ = zone or local_zone()
        return len({night_of(r.started_at, zone_) for r in self._select(where, params)})

    def sessions_in_night(
        self,
        now: datetime | None = None,
        *,
        device: str | None = None,
        zone: tzinfo | None = None,
        sources: Iterable[str] | None = PROGRAM_SOURCES,
    ) -> list[SessionRecord]:
        """Sessions that ran (or are running) in the night of ``now`` (noon to noon in
        ``zone``, default local), for the per-night limit: by default only program
        starts (:data:`PROGRAM_SOURCES`), so an evening test by hand does not use up
        the bedtime program's budget; ``sources=None`` counts every session."""
        zone_ = zone or local_zone()
        start, end = night_bounds(night_of(now or self._clock(), zone_), zone_)
        params: list[object] = [_iso(start), _iso(end)]
        where = (
            "started_at >= ? AND started_at < ? "
            f"AND (end_reason IS NULL OR {_RAN})"
        )
        if sources is not None:
            wanted = tuple(sources)
            where += f" AND source IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        return self._select(_for_device(where, params, device), params)

    def last_session_end(self, device: str | None = None) -> datetime | None:
        """When the most recent session that ran ended (for the cooldown), or None."""
        params: list[object] = []
        where = _for_device(
            f"ended_at IS NOT NULL AND {_RAN}", params, device
        )
        row = self._db.execute(
            f"SELECT MAX(ended_at) FROM sessions WHERE {where}", tuple(params)
        ).fetchone()
        return _parse(row[0]) if row else None


def _check_one_of(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _for_device(where: str, params: list[object], device: str | None) -> str:
    """``where`` narrowed to one device when ``device`` is given (appends its param)."""
    if device is None:
        return where
    params.append(device)
    return where + " AND device = ?"
