"""The emergency broadcast node."""
from __future__ import annotations

from typing import Any

from simulators.faults import FaultParams, NoParams

from .base import MachineModel


class BroadcastNodeModel(MachineModel):
    """Emergency broadcast node: amplifier, speaker line, mains with a ~1 h battery.

    ``play_command`` plays the message in ``message_id`` / ``zone`` / ``priority`` (set
    beforehand) if its priority is at least the one playing: emergency (3) pre-empts
    dispatcher speech (2), which pre-empts routine (1). A message loops until
    ``stop_command``. A node with an amplifier or line fault plays nothing (a fault
    silences what was playing). ``mains_loss`` runs the node on its battery, which drains
    (faster while playing) and recharges when mains come back.
    """

    kind = "broadcast_node"
    FAULTS = {"amplifier_fault": NoParams, "line_fault": NoParams, "mains_loss": NoParams}
    DRAIN_IDLE = 100 / 7200  # %/s: two hours idle on the battery
    DRAIN_PLAYING = 100 / 3600  # %/s: one hour playing (≥ 85 dB)
    CHARGE = 100 / 14400  # %/s

    def _init_state(self) -> None:
        self.battery = 100.0
        self.volume = 80
        self.pending = {"message_id": 1, "zone": 0, "priority": 1}
        self.playing: tuple[int, int, int] | None = None  # (message, zone, priority)

    @property
    def silenced(self) -> bool:
        return "amplifier_fault" in self.active or "line_fault" in self.active or self.battery <= 0

    def _on_command(self, signal: str, value: Any) -> None:
        if signal in self.pending:
            self.pending[signal] = int(value)
        elif signal == "volume_setpoint":
            self.volume = int(value)
        elif signal == "stop_command" and value:
            self.playing = None
        elif signal == "play_command" and value and not self.silenced:
            priority = self.pending["priority"]
            if self.playing is None or priority >= self.playing[2]:
                self.playing = (self.pending["message_id"], self.pending["zone"], priority)

    def _on_fault(self, name: str, params: FaultParams) -> None:
        if self.silenced:
            self.playing = None

    def _on_fault_cleared(self, name: str) -> None:
        pass  # a repaired node stays quiet until told to play again

    def _step(self, t: float, dt: float) -> None:
        if "mains_loss" in self.active:
            self.battery = max(0.0, self.battery - (self.DRAIN_PLAYING if self.playing else self.DRAIN_IDLE) * dt)
            if self.battery <= 0:
                self.playing = None
        else:
            self.battery = min(100.0, self.battery + self.CHARGE * dt)

    def _outputs(self, t: float) -> dict[str, Any]:
        message, zone, priority = self.playing or (0, 0, 0)
        return {
            "battery_level": int(round(self.battery)),
            "volume": self.volume,
            "playing_message": message,
            "playing_zone": zone,
            "playing_priority": priority,
            "online": True,
            "on_battery": "mains_loss" in self.active,
            "amplifier_fault": "amplifier_fault" in self.active,
            "line_fault": "line_fault" in self.active,
            "playing": self.playing is not None,
            **self.pending,
            "volume_setpoint": self.volume,
            "play_command": False,  # momentary: reads back 0
            "stop_command": False,
        }
