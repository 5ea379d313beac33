"""Snapshots taken on alarms: JPEG files under one directory, within a disk budget.

A snapshot is stored as ``<directory>/<camera>/<UTC time>.jpg`` and referred to by its
path relative to the directory (``belt-head-cam/20250314T063000.118Z.jpg``), which is what
the alarm engine records. When the files together pass ``max_bytes`` the oldest go first,
whichever camera took them. Writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.core.model import iso, utcnow

from .config import SnapshotConfig

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class SnapshotError(Exception):
    """The image cannot be stored (not a JPEG, larger than the budget, disk error)."""


@dataclass(frozen=True)
class SnapshotRef:
    """A stored snapshot: ``ref`` is its path relative to the store's directory."""

    ref: str
    camera: str
    ts: datetime
    bytes: int
    path: Path


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


class SnapshotStore:
    def __init__(self, config: SnapshotConfig):
        self.directory = Path(config.directory)
        self.max_bytes = config.max_bytes
        self._lock = asyncio.Lock()  # one save (and its trimming) at a time

    async def save(self, camera: str, jpeg: bytes, ts: datetime | None = None) -> SnapshotRef:
        """Store ``jpeg`` for ``camera``, trim the store to its budget, return the reference."""
        if not _SAFE.match(camera):
            raise SnapshotError(f"camera id {camera!r} cannot name a directory")
        if not is_jpeg(jpeg):
            raise SnapshotError(f"{camera}: the camera's answer is not a JPEG ({len(jpeg)} bytes)")
        if len(jpeg) > self.max_bytes:
            raise SnapshotError(f"{camera}: a {len(jpeg)} byte image does not fit the {self.max_bytes} byte budget")
        ts = ts or utcnow()
        async with self._lock:
            path = await asyncio.to_thread(self._write, camera, jpeg, ts)
            await asyncio.to_thread(self._trim)
        return SnapshotRef(str(path.relative_to(self.directory)), camera, ts, len(jpeg), path)

    def path(self, ref: str) -> Path:
        """The file of a reference (refused if it leaves the directory)."""
        path = (self.directory / ref).resolve()
        if self.directory.resolve() not in path.parents:
            raise SnapshotError(f"{ref!r} is not a snapshot reference")
        return path

    def total_bytes(self) -> int:
        return sum(size for _, _, size in self._files())

    def _write(self, camera: str, jpeg: bytes, ts: datetime) -> Path:
        folder = self.directory / camera
        folder.mkdir(parents=True, exist_ok=True)
        stamp = iso(ts).replace("-", "").replace(":", "")
        path = folder / f"{stamp}.jpg"
        n = 1
        while path.exists():  # two snapshots in one millisecond
            path, n = folder / f"{stamp}-{n}.jpg", n + 1
        try:
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as tmp:
                tmp.write(jpeg)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp.name, path)
        except OSError as exc:
            raise SnapshotError(f"{camera}: cannot write {path}: {exc.strerror or exc}") from None
        return path

    def _trim(self) -> None:
        files = sorted(self._files())  # oldest first (names are times: they break ties)
        total = sum(size for _, _, size in files)
        for _, path, size in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def _files(self) -> list[tuple[float, Path, int]]:
        """(modified, path, size) of every stored snapshot."""
        if not self.directory.is_dir():
            return []
        found = []
        for folder in self.directory.iterdir():
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.endswith(".jpg") and entry.is_file():
                        stat = entry.stat()
                        found.append((stat.st_mtime, Path(entry.path), stat.st_size))
        return found
