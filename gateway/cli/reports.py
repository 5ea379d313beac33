"""``minegw report daily``: the daily report (roof pressure, equipment, alarms, data completeness) from the
historian, as HTML, PDF and CSV (docs/reports.md)."""
from __future__ import annotations

import asyncio
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import fail, load, out
from gateway.core.errors import UserError

report_app = typer.Typer(no_args_is_help=True, help="Reports from the historian.")


@report_app.command("daily")
def daily(config: Path = typer.Option(..., "--config", "-c", help="site file (historian, shifts, faces)"),
          day: Optional[str] = typer.Option(None, "--date", help="YYYY-MM-DD, the mine's local date"),
          shift: Optional[int] = typer.Option(None, "--shift", help="one shift (1 = the first of the day); "
                                              "absent: every shift of the date"),
          last: bool = typer.Option(False, "--last", help="the shift that ended last (what the timer runs)"),
          lang: list[str] = typer.Option(["zh"], "--lang", help="zh or en; repeat for both"),
          out_dir: Path = typer.Option(Path("."), "--out", help="folder: OUT/DATE/<day|shiftN>-<lang>/"),
          keep_days: Optional[int] = typer.Option(None, "--keep-days", help="remove OUT/DATE folders older "
                                                  "than this many days [default: the site's reports.keep_days "
                                                  "when --last]")) -> None:
    """Write the daily report: report.html, report.pdf and a CSV per table."""
    from gateway.reports.daily import collect
    from gateway.reports.render import write_all

    site = load(config)
    for one in lang:
        if one not in ("zh", "en"):
            fail(f"--lang {one}: expected zh or en")
    if last:
        window = site.reports.last_ended(datetime.now(timezone.utc))
        the_day, shift = window.day, window.number
        keep_days = keep_days or site.reports.keep_days
    elif day is None:
        fail("give --date YYYY-MM-DD (or --last)")
    else:
        try:
            the_day = date.fromisoformat(day)
        except ValueError:
            fail(f"--date {day!r}: expected YYYY-MM-DD")
    try:
        report = asyncio.run(collect(site, the_day, shift))
        folder = out_dir / the_day.isoformat()
        for one in lang:
            scope = f"shift{shift}" if shift else "day"
            for path in write_all(report, one, folder / f"{scope}-{one}"):
                out.print(str(path), highlight=False)
    except UserError as exc:
        fail(str(exc))
    if keep_days:
        for old in prune(out_dir, the_day - timedelta(days=keep_days)):
            out.print(f"removed {old}", highlight=False)


def prune(out_dir: Path, before: date) -> list[Path]:
    """Remove the report folders (named YYYY-MM-DD) dated before ``before``; nothing else is touched."""
    removed = []
    for folder in sorted(out_dir.iterdir()) if out_dir.is_dir() else ():
        try:
            dated = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and dated < before:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
