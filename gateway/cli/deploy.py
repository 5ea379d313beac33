"""``minegw deploy acl`` and ``minegw deploy writers``: the brokers' ACLs and ingest's writers, from the site files."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.cli.common import fail, out

deploy_app = typer.Typer(no_args_is_help=True, help="Deployment files generated from the site files.")


@deploy_app.command("acl")
def deploy_acl(broker: str = typer.Argument(..., help="underground (a district broker) or surface"),
               configs: list[Path] = typer.Option(..., "-c", "--config",
                                                  help="every gateway's site file (repeat -c); together they "
                                                       "name the site's areas, gateways and operators"),
               output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here (default: stdout)"),
               check: bool = typer.Option(False, "--check", help="only compare with --output; exit 1 if it differs")
               ) -> None:
    """Print (or write) the Mosquitto ACL of a district broker or of the surface broker."""
    from gateway.aclgen import BROKERS, generate_acl
    from gateway.config import ConfigError

    if broker not in BROKERS:
        fail(f"broker: {broker!r} is neither {' nor '.join(BROKERS)}")
    try:
        text = generate_acl(broker, configs)
    except ConfigError as exc:
        fail(str(exc))
    put(text, output, check, f"acl {broker}")


def put(text: str, output: Path | None, check: bool, command: str) -> None:
    """Print ``text``, write it to ``output``, or (``check``) exit 1 when ``output`` holds something else."""
    if output is None:
        out.print(text, end="", highlight=False, markup=False)
    elif check:
        if not output.exists() or output.read_text() != text:
            fail(f"{output} differs from what the site files give: run minegw deploy {command} ... -o {output}")
        out.print(f"{output}: up to date", highlight=False)
    else:
        output.write_text(text)
        out.print(f"wrote {output}", highlight=False)


@deploy_app.command("writers")
def deploy_writers(configs: list[Path] = typer.Option(..., "-c", "--config",
                                                      help="the site file of every gateway publishing its historian "
                                                           "lines (repeat -c)"),
                   output: Path | None = typer.Option(None, "-o", "--output",
                                                      help="the ingest.yaml whose writers: block to replace "
                                                           "(default: print the block)"),
                   check: bool = typer.Option(False, "--check", help="only compare with --output; exit 1 if it differs")
                   ) -> None:
    """Print (or put into ingest.yaml) the writers: block: which gateways' historian lines ingest takes, and
    the areas and rings each may write."""
    from gateway.config import ConfigError
    from gateway.surface.writers import with_writers, writers_block

    try:
        text = writers_block(configs)
        if output is not None:
            text = with_writers(output.read_text() if output.exists() else "", text)
    except ConfigError as exc:
        fail(str(exc))
    put(text, output, check, "writers")
