"""What a gateway of N devices holds once built: modules, peak RSS, objects the GC tracks, and the CPU of
one full collection before and after ``gc.freeze`` (gateway/core/heap.py).

    python bench/bench_heap.py                  # 1 000 devices x 100 registers, historian on
    python bench/bench_heap.py --devices 200 500 1000

One process per device count (this script runs itself again): imports what ``minegw run`` imports, loads
the site bench_gateway.py generates, builds the ``Gateway`` and its sinks (MQTT, historian) without
starting them (no broker, no polls: the first polls add the decode plans, ~100 000 more objects at 1 000
devices). A full collection walks every tracked object with the event loop stopped; frozen objects are
not walked any more.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))


def full_collection_ms() -> float:
    """The fastest of five full collections, CPU ms of this thread."""
    times = []
    for _ in range(5):
        began = time.thread_time()
        gc.collect()
        times.append(time.thread_time() - began)
    return min(times) * 1e3


def measure(devices: int) -> dict:
    from bench_gateway import make_profile, make_site

    import gateway.cli
    from gateway.config import load_site
    from gateway.runtime import Gateway
    from gateway.service import build_sinks

    workdir = Path(tempfile.mkdtemp(prefix="bench-heap-"))
    (workdir / "profile.yaml").write_text(yaml.safe_dump(make_profile(100)))
    site = make_site(devices, workdir / "profile.yaml", 1883, [20000 + i for i in range(devices)], 1, 1.0, 1, "5",
                     "compact")
    site["historian"] = {"url": "http://127.0.0.1:1", "database": "bench",
                         "buffer": {"path": str(workdir / "buffer.sqlite3")}}
    (workdir / "site.yaml").write_text(yaml.safe_dump(site))
    loaded = load_site(workdir / "site.yaml")
    gateway = Gateway(loaded, build_sinks(loaded))
    row = {"devices": devices, "modules": len(sys.modules), "numpy": "numpy" in sys.modules,
           "cryptography": "cryptography" in sys.modules,
           "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "tracked": len(gc.get_objects()), "full_gc_ms": full_collection_ms()}
    gc.freeze()
    row.update(frozen=gc.get_freeze_count(), full_gc_frozen_ms=full_collection_ms(), adapters=len(gateway.adapters))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1000])
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return
    print("| devices | modules | NumPy / cryptography loaded | peak RSS MB | objects tracked | full GC CPU ms "
          "| after gc.freeze |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for n in args.devices:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {n} | {r['modules']} | {'yes' if r['numpy'] else 'no'} / {'yes' if r['cryptography'] else 'no'} "
              f"| {r['rss_peak_mb']:.0f} | {r['tracked']} | {r['full_gc_ms']:.1f} | {r['full_gc_frozen_ms']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
