"""Views of the session journal: the history table, nights summarized, and the plot
(``footctl history``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo

from footctl.journal import RATING_MAX, SessionRecord
from footctl.schedule import local_zone, night_of

_TABLE_HEADERS = (
    "id", "started", "min", "device", "source", "program", "steps", "peak heat", "heat min",
    "ended", "rating", "note",
)  # fmt: skip


def _ended(r: SessionRecord) -> str:
    if r.end_reason is None:
        return "running"
    if r.ended_by and r.ended_by != r.end_reason:
        return f"{r.end_reason} ({r.ended_by})"
    return r.end_reason


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def render_history_table(records: Iterable[SessionRecord], *, zone: tzinfo | None = None) -> str:
    """The records as a plain-text table, start times in ``zone`` (default local)."""
    zone_ = zone or local_zone()
    rows = [
        (
            str(r.id),
            r.started_at.astimezone(zone_).strftime("%Y-%m-%d %H:%M"),
            _minutes(r.duration_s) if r.ran else "-",
            r.device,
            f"{r.source} (sim)" if r.simulated else r.source,
            r.program or "-",
            str(r.steps_run),
            str(r.peak_heat),
            _minutes(r.heat_s),
            _ended(r),
            "-" if r.rating is None else str(r.rating),
            r.note or "",
        )
        for r in records
    ]
    if not rows:
        return "no sessions"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(_TABLE_HEADERS)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [_TABLE_HEADERS, tuple("-" * w for w in widths), *rows]
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class NightSummary:
    """Minutes massaged in one night and the night's rating (the last one given)."""

    night: date
    minutes: float
    rating: int | None


def summarize_nights(
    records: Iterable[SessionRecord], *, zone: tzinfo | None = None
) -> list[NightSummary]:
    """One summary per night from the first to the last night with a session that ran,
    nights without one included (0 minutes), oldest first."""
    zone_ = zone or local_zone()
    minutes: dict[date, float] = {}
    ratings: dict[date, int] = {}
    for r in sorted(records, key=lambda r: (r.started_at, r.id)):
        if not r.ran or r.duration_s is None:
            continue
        night = night_of(r.started_at, zone_)
        minutes[night] = minutes.get(night, 0.0) + r.duration_s / 60
        if r.rating is not None:
            ratings[night] = r.rating
    if not minutes:
        return []
    first, last = min(minutes), max(minutes)
    nights = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [NightSummary(n, minutes.get(n, 0.0), ratings.get(n)) for n in nights]


# A terminal plot narrower or lower than this has no room for axes and labels.
PLOT_WIDTH, PLOT_HEIGHT = 80, 20


def plot_history(
    records: Iterable[SessionRecord],
    *,
    zone: tzinfo | None = None,
    width: int = PLOT_WIDTH,
    height: int = PLOT_HEIGHT,
) -> str:
    """Minutes per night (bars, left axis) and sleep rating (line, right axis, 1-5) as
    colourless terminal text."""
    nights = summarize_nights(records, zone=zone)
    if not nights:
        return "no sessions to plot"
    # plotext takes ~0.2 s to import; only `history --plot` pays for it.
    import plotext  # type: ignore[import-untyped]  # noqa: PLC0415

    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("clear")
    labels = [n.night.strftime("%m-%d") for n in nights]
    fig.draw(fig.bar(labels, [round(n.minutes, 1) for n in nights]).label("minutes"))
    rated = [(i, n.rating) for i, n in enumerate(nights, start=1) if n.rating is not None]
    if rated:
        line = fig.signal([i for i, _ in rated], [r for _, r in rated], yside="right")
        fig.draw(line.lines(True).label("rating"))
        fig.ruler("y", "right").lim(0, RATING_MAX)
    fig.legend(False)
    fig.title("bars: minutes per night; line: sleep rating (right axis)")
    text = fig.build().string(colorless=True)
    fig.clear()
    return str(text)
