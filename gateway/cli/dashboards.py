"""``minegw dashboards``: build the Grafana dashboards' JSON from the code, push it to Grafana."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import err, fail, load, out

dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards of the dispatch centre: build, push.")


# -- dashboards ------------------------------------------------------------------------
def _built_dashboards(site: Path | None, lang: str) -> dict[str, dict]:
    import dashboards

    try:
        from dashboards.i18n import LANGS
        from dashboards.settings import from_site

        if lang not in LANGS:
            fail(f"--lang {lang}: expected one of {', '.join(LANGS)}")
        return dashboards.build_all(from_site(load(site)) if site else None, lang)
    except ModuleNotFoundError as exc:  # the SDK is an extra: the gateway underground does not need it
        fail(f"{exc}: install the dashboards extra: pip install 'minegw[dashboards]'")


@dashboards_app.command("build")
def dashboards_build(directory: Optional[Path] = typer.Option(None, "--dir", help="default: dashboards/json (zh: json-zh)"),
                     check: bool = typer.Option(False, "--check", help="only compare; exit 1 if out of date"),
                     site: Optional[Path] = typer.Option(None, "--config", "-c",
                                                         help="site file: its thresholds, ranges, staleness windows"),
                     lang: str = typer.Option("en", "--lang", help="en or zh (Chinese titles, labels, mappings)")) -> None:
    """Write every dashboard's JSON (Grafana provisioning reads it), or check it is up to date."""
    import dashboards

    directory = directory or dashboards.JSON_DIRS.get(lang, dashboards.JSON_DIR)
    built = _built_dashboards(site, lang)
    if check:
        problems = dashboards.differences(directory, built)
        for problem in problems:
            err.print(f"{directory}/{problem}", highlight=False, markup=False)
        if problems:
            fail("the dashboards' JSON is out of date: run minegw dashboards build")
        out.print(f"{directory}: up to date", highlight=False)
        return
    for path in dashboards.write(directory, built):
        out.print(f"wrote {path}", highlight=False)


@dashboards_app.command("push")
def dashboards_push(url: str = typer.Option(..., envvar="GRAFANA_URL", help="Grafana, e.g. http://grafana:3000"),
                    token: str = typer.Option(..., envvar="GRAFANA_TOKEN",
                                              help="service-account token, or $GRAFANA_TOKEN"),
                    folder: str = typer.Option("minegw", help="folder title (created when missing)"),
                    directory: Optional[Path] = typer.Option(None, "--dir", help="default: dashboards/json"),
                    timeout: float = typer.Option(10.0)) -> None:
    """Create or update the dashboards' JSON on a Grafana server (needs the grafana extra)."""
    import dashboards
    from dashboards.push import PushError, push_dashboards, read_dir

    try:
        results = push_dashboards(url, token, read_dir(directory or dashboards.JSON_DIR), folder=folder,
                                  timeout=timeout)
    except PushError as exc:
        fail(str(exc))
    for r in results:
        out.print(f"{r.status:8} {r.title} (uid {r.uid}, version {r.version}) {r.url}", highlight=False)
