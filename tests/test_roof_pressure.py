"""Derived roof-pressure metrics against the longwall simulator's own truth for each cycle."""
from datetime import datetime, timedelta, timezone

import pytest

from adapters.opcua.nodemap import load_nodemap
from gateway.derived.roof_pressure import RoofPressureConfig, RoofPressureMetrics
from gateway.core.model import Quality, Reading, Sample
from simulators.opcua.longwall import LongwallModel

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def feed(metrics, model, supports, t0, t1, step=1.0):
    """Sample every leg of ``supports`` each ``step`` s from t0 to t1, as one reading per instant."""
    out = []
    t = t0
    while t <= t1:
        ts = EPOCH + timedelta(seconds=t)
        samples = [Sample(signal=f"support_{n:03d}_{leg}_leg_pressure", value=model.leg_pressure(n, leg, t),
                          unit="MPa", ts=ts) for n in supports for leg in ("front", "rear")]
        if derived := metrics.process(Reading(device="roof", ts=ts, poll_ms=0, samples=samples)):
            out.append(derived)
        t += step
    return out


def results(derived):
    return {s.signal: s.value for r in derived for s in r.samples if s.signal.startswith("support_")}


@pytest.fixture
def face():
    nodemap = load_nodemap("longwall", supports=6)
    model = LongwallModel(nodemap, seed=11)
    metrics = RoofPressureMetrics.for_nodemap("roof", nodemap.expanded, RoofPressureConfig())
    return model, metrics


@pytest.mark.parametrize("k", [1, 9])  # an ordinary cycle; one in periodic weighting, with yield openings
def test_cycle_figures_match_the_simulated_truth(face, k):
    model, metrics = face
    first, second = model.cycle(3, k), model.cycle(3, k + 1)
    derived = feed(metrics, model, [3], first.lowered_at - 5, second.lowered_at + 20)
    got = results(derived)
    for leg in ("front", "rear"):
        p = f"support_003_{leg}_leg_"
        assert got[p + "setting_load"] == pytest.approx(first.setting[leg], abs=0.3)
        assert got[p + "end_resistance"] == pytest.approx(first.end_resistance[leg], abs=0.3)
        assert got[p + "load_rise_rate"] == pytest.approx(first.load_rise_mpa_h(leg), rel=0.05, abs=0.05)
        assert got[p + "yield_openings"] == first.yields[leg]
    ended = [s.ts for r in derived for s in r.samples if s.signal.endswith("front_leg_end_resistance")]
    assert abs((ended[0] - EPOCH).total_seconds() - second.lowered_at) < 5  # reported when lowered again


def test_a_cycle_joined_half_way_is_not_reported_and_bad_samples_are_ignored(face):
    model, metrics = face
    c = model.cycle(2, 1)
    mid = (c.set_at + c.ended_at) / 2
    assert results(feed(metrics, model, [2], mid, c.ended_at - 30)) == {}
    ts = EPOCH + timedelta(seconds=c.ended_at + 1)
    bad = Reading(device="roof", ts=ts, poll_ms=0, samples=[
        Sample(signal="support_002_front_leg_pressure", value=None, unit="MPa", quality=Quality.COMM_FAIL, ts=ts)])
    assert metrics.process(bad) is None


def test_under_set_supports_are_counted():
    legs = {f"support_{n:03d}_front_leg_pressure": (n, "front") for n in (1, 2, 3)}
    metrics = RoofPressureMetrics("roof", legs, RoofPressureConfig(required_setting_mpa=24))
    t = 0

    def step(pressures):
        nonlocal t
        t += 1
        ts = EPOCH + timedelta(seconds=t)
        return metrics.process(Reading(device="roof", ts=ts, poll_ms=0, samples=[
            Sample(signal=name, value=p, unit="MPa", ts=ts) for name, p in zip(legs, pressures)]))

    # lowered, set (to 25, 20 and 26 MPa), loaded for a while, lowered again
    for pressures in ([1, 1, 1], [12, 10, 13], [25, 20, 26], [25.2, 20.1, 26.1], [27, 22, 28], [1, 1, 1]):
        last = step(pressures)
    summary = {s.signal: s.value for s in last.samples}
    assert summary["support_002_front_leg_setting_load"] == 20
    assert summary["supports_below_setting"] == 1


SUPPORTS_ONLY = """
kind: roof_pressure
namespace: urn:minegw:test-face
root: Longwall
groups:
  - name: supports
    count: 4
    location: {along: face, start_m: 0.75, spacing_m: 1.5}
    signals:
      - {name: "support_{n:03d}_front_leg_pressure", node: "s=Longwall.Support{n:03d}.FrontLegPressure",
         role: leg_front, unit: MPa, type: Float, range: [0, 60]}
      - {name: "support_{n:03d}_rear_leg_pressure", node: "s=Longwall.Support{n:03d}.RearLegPressure",
         role: leg_rear, unit: MPa, type: Float, range: [0, 60]}
"""


async def test_the_gateway_derives_cycle_metrics_from_a_live_opcua_face(tmp_path):
    """A face running 1000 times faster than life (a shearer pass in ~2.5 s), read over OPC UA."""
    import asyncio

    from gateway.runtime import Gateway
    from simulators.opcua.face import FaceSimulator
    from simulators.opcua.server import OpcUaSimServer
    from tests.sites import make_site
    from tests.util import RecordingSink, free_port

    nodemap_file = tmp_path / "face.yaml"
    nodemap_file.write_text(SUPPORTS_ONLY)
    face = FaceSimulator("rp-1201", load_nodemap(str(nodemap_file)), seed=4, time_scale=1000)
    server = OpcUaSimServer(f"opc.tcp://127.0.0.1:{free_port()}", [face], update_interval=0.004,
                            certificate_dir=tmp_path / "sim")
    site = make_site({"id": "rp-1201", "adapter": "opcua", "area": "face-1201", "nodemap": str(nodemap_file),
                      "url": server.url, "sampling_interval": 0.004, "publishing_interval": 0.02},
                     site_id="mine", areas={"face-1201": "longwall_face"})
    sink = RecordingSink("collector")
    await server.start()
    try:
        async with Gateway(site, [sink]):
            for _ in range(200):
                derived = [s for r in sink.readings for s in r.samples if s.signal.endswith("_setting_load")]
                if derived:
                    break
                await asyncio.sleep(0.1)
    finally:
        await server.stop()
    assert derived, "no support cycle was completed"
    assert all(20 < s.value < 40 for s in derived)
    summary = [s for r in sink.readings for s in r.samples if s.signal == "supports_below_setting"]
    assert summary and 0 <= summary[-1].value <= 4
