"""The RTSP test camera (tests/rtsp_camera.py) as a process a test starts, kills and restarts,
counting the client connections it accepted: the sessions the relay opened at the camera."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.util import free_port

SCRIPT = Path(__file__).with_name("rtsp_camera.py")


class RtspCamera:
    def __init__(self, port: int | None = None, *extra: str):
        self.port = port or free_port()
        self.extra = extra
        self.connections = 0  # over every start
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def url(self, path: str = "sub") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def start(self) -> RtspCamera:
        self._ready.clear()
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), str(self.port), *self.extra],
                                     stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(15):
            raise RuntimeError(f"the RTSP test camera did not start on port {self.port}")
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("ready"):
                self._ready.set()
            elif line.startswith("connected"):
                self.connections += 1

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def wait_connections(self, n: int, timeout: float = 10) -> int:
        end = time.monotonic() + timeout
        while self.connections < n and time.monotonic() < end:
            time.sleep(0.05)
        return self.connections
