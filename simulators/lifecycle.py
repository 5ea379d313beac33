"""The listening side every simulator server shares: its port follows its devices' ``offline`` fault."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)


class FaultFollowingServer:
    """Listens while started and at least one of its devices is not ``offline``.

    Subclasses call ``super().__init__()`` and implement ``listening``, ``_all_offline``,
    ``_open`` (raise OSError when the port cannot be bound) and ``_shut``; a fault change
    hands its work to ``_schedule``.
    """

    def __init__(self) -> None:
        self._wanted = False
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task] = set()

    @property
    def listening(self) -> bool:
        raise NotImplementedError

    def _all_offline(self) -> bool:
        raise NotImplementedError

    async def _open(self) -> None:
        raise NotImplementedError

    async def _shut(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen (unless every device is offline). Raises OSError if the port cannot be bound."""
        self._wanted = True
        await self._sync()

    async def stop(self) -> None:
        self._wanted = False
        await self.settled()
        await self._sync()

    async def settled(self) -> None:
        """Wait until the port follows the latest fault changes."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.stop()

    def _schedule(self, work: Awaitable[None] | None = None) -> None:
        """Run ``work`` (default: follow the offline faults) after a fault change; start() looks anyway."""
        if not self._wanted:
            if work is not None and hasattr(work, "close"):
                work.close()  # a coroutine never awaited
            return
        task = asyncio.get_running_loop().create_task(self._logged(work or self._sync()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _logged(work: Awaitable[None]) -> None:
        try:
            await work
        except OSError as exc:
            log.error("%s", exc)

    async def _sync(self) -> None:
        async with self._lock:
            online = self._wanted and not self._all_offline()
            if online and not self.listening:
                await self._open()
            elif not online and self.listening:
                await self._shut()
