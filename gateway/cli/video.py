"""``minegw video``: look at camera streams from the field (``probe``; the relay adds ``relay status``)."""
from __future__ import annotations

from typing import Optional

import typer

from gateway.cli.common import out

video_app = typer.Typer(no_args_is_help=True, help="Probe camera streams (RTSP, files).")


@video_app.command("probe")
def probe(url: str = typer.Argument(..., help="rtsp://[user:password@]host:port/path, or a file"),
          seconds: float = typer.Option(6.0, min=1, max=600, help="how long to watch"),
          frozen_after: Optional[float] = typer.Option(None, min=0.5, help="seconds without motion that make a "
                                                       "frozen picture (default: the rules', 8)"),
          min_kbps: Optional[float] = typer.Option(None, min=0, help="report a bit rate below this"),
          timeout: float = typer.Option(5.0, min=0.5, max=60, help="seconds to open, and without a packet")) -> None:
    """Watch a stream for a while: codec, resolution, frame rate, bit rate, key frames, the picture, a verdict.

    Exit status 0 when healthy, 1 otherwise."""
    from gateway.video.health import probe as watch
    from gateway.video.health import public_url
    from gateway.video.picture import HealthRules

    rules = HealthRules(**{k: v for k, v in {"frozen_after_s": frozen_after, "min_kbps": min_kbps}.items()
                           if v is not None})
    sample = watch(url, seconds, rules=rules, timeout=timeout)
    out.print(f"[bold]{public_url(url)}[/]")
    if sample.stream_ok:
        out.print(f"codec {sample.codec}  {sample.width}x{sample.height}  {sample.fps} fps  {sample.kbps} kbit/s  "
                  f"key frame every {_seconds(sample.keyframe_interval_s)}  stalls {sample.stalls}")
        m = sample.measured
        if m is not None:
            motion = "" if sample.motion is None else f", motion {sample.motion:.2f}"
            out.print(f"picture {sample.picture} (luma {m.luma:.0f}, contrast {m.contrast:.0f}, "
                      f"sharpness {m.sharpness:.2f}{motion})")
    out.print(f"verdict: {sample.verdict}")
    if sample.problems:
        raise typer.Exit(1)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:g} s"
