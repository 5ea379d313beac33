"""Traces the historian path inside a gateway process that a benchmark starts (``MINEGW_TRACE=FILE``).

    MINEGW_TRACE=/tmp/t.json PYTHONPATH=bench/historian_trace:. python bench/bench_gateway.py --devices 1000 \\
        --historian start --historian-only --no-peer --seconds 20 --payload compact
    python bench/historian_trace.py /tmp/t.json

Python imports this module at start-up (``sitecustomize``) in every process of the run; it does nothing
unless ``MINEGW_TRACE`` is set, and only the process that starts a ``Gateway`` writes FILE (every 5 s and
at exit). Once ``gateway.runtime`` is imported it wraps, with perf_counter and thread CPU time:
the historian's commits (``_commit_pending``: start, duration, lines), the buffer's ``put``/``take_batch``/
``ack`` on the DB thread, the CommitGate's releases (readings per release), the MQTT sink's
``on_readings``, the drain's writes, the historian's ``on_reading``, every garbage collection (generation,
wall and CPU), and event-loop lag (a 5 ms sleeper woken more than 4 ms late). A diagnosis tool: the
wrappers cost a little and the lists they fill live in the traced heap.
"""
import os
import sys

OUT = os.environ.get("MINEGW_TRACE")

if OUT:
    import atexit
    import importlib.abc
    import importlib.machinery
    import json
    import time

    EV: dict = {name: [] for name in ("lag", "commit", "put", "take", "ack", "release", "mqtt", "write",
                                      "onreading", "gc")}
    STARTED: list = []
    pc = time.perf_counter

    def dump() -> None:
        if not STARTED:  # the simulators, the subscriber, the benchmark itself: nothing traced
            return
        import gc
        EV["objects"], EV["frozen"] = len(gc.get_objects()), gc.get_freeze_count()
        with open("/proc/self/status") as f:
            EV["status"] = [line.strip() for line in f if line.startswith(("VmRSS", "VmHWM"))]
        with open(OUT, "w") as f:
            json.dump(EV, f)

    def timed_in_thread(name: str, fn):
        def wrapper(*args, **kwargs):
            t, cpu = pc(), time.thread_time()
            result = fn(*args, **kwargs)
            EV[name].append((t, pc() - t, time.thread_time() - cpu))
            return result
        return wrapper

    def trace_gc() -> None:
        import gc
        began = {}

        def callback(phase, info):
            if phase == "start":
                began["t"], began["cpu"] = pc(), time.thread_time()
            elif "t" in began:
                EV["gc"].append((began["t"], pc() - began["t"], info["generation"], time.thread_time() - began["cpu"]))
        gc.callbacks.append(callback)

    def patch() -> None:
        import asyncio

        from gateway import buffer, runtime
        from gateway.historian import sink as historian
        from gateway.mqtt import sink as mqtt

        trace_gc()
        on_commit = runtime.CommitGate._on_commit

        def traced_on_commit(self, future):
            t, n = pc(), sum(len(held) for commit, held in self._waiting if commit.done())
            on_commit(self, future)
            EV["release"].append((t, pc() - t, n))
        runtime.CommitGate._on_commit = traced_on_commit

        commit_pending = historian.HistorianSink._commit_pending

        async def traced_commit_pending(self):
            t, n = pc(), len(self._pending)
            result = await commit_pending(self)
            EV["commit"].append((t, pc() - t, n))
            return result
        historian.HistorianSink._commit_pending = traced_commit_pending

        for name in ("put", "take_batch", "ack"):
            setattr(buffer.DurableBuffer, name,
                    timed_in_thread(name.removesuffix("_batch"), getattr(buffer.DurableBuffer, name)))

        on_reading = historian.HistorianSink.on_reading

        def traced_on_reading(self, device, reading):
            t = pc()
            on_reading(self, device, reading)
            EV["onreading"].append(pc() - t)
        historian.HistorianSink.on_reading = traced_on_reading

        on_readings = mqtt.MqttSink.on_readings

        def traced_on_readings(self, batch):
            t = pc()
            on_readings(self, batch)
            EV["mqtt"].append((t, pc() - t, len(batch)))
        mqtt.MqttSink.on_readings = traced_on_readings

        deliver = historian.HistorianSink._deliver

        async def traced_deliver(self, batch):
            t = pc()
            result = await deliver(self, batch)
            EV["write"].append((t, pc() - t, len(batch)))
            return result
        historian.HistorianSink._deliver = traced_deliver

        start = runtime.Gateway.start

        async def traced_start(self):
            await start(self)
            STARTED.append(True)

            async def lag():
                while True:
                    t = pc()
                    await asyncio.sleep(0.005)
                    if (late := pc() - t - 0.005) > 0.004:
                        EV["lag"].append((t, late))

            async def dumper():
                while True:
                    await asyncio.sleep(5)
                    dump()
            self._traced = [asyncio.create_task(lag()), asyncio.create_task(dumper())]
        runtime.Gateway.start = traced_start

    class AfterRuntime(importlib.abc.MetaPathFinder):
        """Patches once ``gateway.runtime`` has been executed (whoever imports it first)."""

        done = False

        def find_spec(self, name, path, target=None):
            if name != "gateway.runtime" or AfterRuntime.done:
                return None
            AfterRuntime.done = True
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                sys.modules[name] = module
                patch()
            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterRuntime())
    atexit.register(dump)
