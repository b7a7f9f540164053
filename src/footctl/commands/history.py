"""``footctl history`` and ``footctl rate``: the session journal."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from footctl.config import journal_path
from footctl.errors import ExitCode
from footctl.history import plot_history, render_history_table, summarize_nights
from footctl.journal import Journal

if TYPE_CHECKING:
    from footctl.cli import Output


def history(args: argparse.Namespace, out: Output) -> int:
    """The sessions of the last ``--days`` days: a table, JSON, or a terminal plot."""
    # Sessions on virtual massagers (--simulate, footctl sim) only when asked for.
    include = bool(getattr(args, "include_simulated", False))
    with Journal(journal_path()) as journal:
        records = journal.history(args.days, include_simulated=include)
        hidden = 0 if include or records else len(
            journal.history(args.days, include_simulated=True))
    nights = [
        {"night": n.night.isoformat(), "minutes": round(n.minutes, 1), "rating": n.rating}
        for n in summarize_nights(records)
    ]
    data = {
        "ok": True,
        "journal": str(journal_path()),
        "days": args.days,
        "sessions": [r.to_dict() for r in records],
        "nights": nights,
    }
    text = plot_history(records) if args.plot else render_history_table(records)
    if hidden:  # say why the sessions just run do not show
        text += f" ({hidden} on virtual massagers: --include-simulated shows them)"
    out.result(data, text)
    return ExitCode.OK


def rate(args: argparse.Namespace, out: Output) -> int:
    """Rate last night's sleep (1-5) on the latest session that ran."""
    include = bool(getattr(args, "include_simulated", False))
    with Journal(journal_path()) as journal:
        record = journal.rate_last(args.rating, args.note, include_simulated=include)
    when = record.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
    what = record.program or "manual session"
    text = f"rated session {record.id} ({what}, {when}): {record.rating}/5"
    if record.note:
        text += f" - {record.note}"
    out.result({"ok": True, "session": record.to_dict()}, text)
    return ExitCode.OK
