"""Deterministic physics of the simulated machines: one model per profile kind, one module each.

``model.values(t)`` returns every signal of the kind's profile, in engineering units,
``t`` seconds after the model started. A model keeps a small state (speeds, ramps,
temperatures, counters, protection timers) advanced in fixed steps, and adds seeded
noise on top. Commands (register writes) and injected faults are events stamped with
their time and replayed in order, so the same seed, time and event history always
give the same values, however often and in whatever order they are asked for.
"""
from __future__ import annotations

from adapters.modbus.profile import Profile

from .base import STEP, MachineModel
from .belt_conveyor import BeltConveyorModel, MisalignmentParams, SlipParams, SmokeParams
from .broadcast_node import BroadcastNodeModel
from .face_conveyor import FaceConveyorModel
from .generic import GenericModel
from .roadheader import RoadheaderModel
from .shearer import ShearerModel

MODELS: dict[str, type[MachineModel]] = {
    m.kind: m for m in (ShearerModel, RoadheaderModel, FaceConveyorModel, BeltConveyorModel,
                        BroadcastNodeModel)}


def make_model(profile: str | Profile, seed: int = 0) -> MachineModel:
    """The dynamics model for a profile (or built-in kind); a generic one for custom profiles."""
    if isinstance(profile, str):
        if profile not in MODELS:
            raise ValueError(f"no simulator model for kind {profile!r} (known: {', '.join(MODELS)})")
        return MODELS[profile](seed)
    model = MODELS.get(profile.kind, GenericModel)
    return model(seed, profile)


__all__ = ["MODELS", "STEP", "BeltConveyorModel", "BroadcastNodeModel", "FaceConveyorModel", "GenericModel",
           "MachineModel", "MisalignmentParams", "RoadheaderModel", "ShearerModel", "SlipParams", "SmokeParams",
           "make_model"]
