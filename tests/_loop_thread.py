"""
An asyncio loop in a daemon thread: the stand-in servers the bench tests run
(the asyncio baseline, fake IRC and WebSocket servers) live there, so that
the bench's worker processes can talk to them while the test waits.
Shared by tests/test_bench.py, test_bench_irc.py and test_bench_web.py
through conftest's ``loop_thread`` fixture.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Coroutine


class LoopThread:
    """An asyncio loop in a daemon thread, stopped (tasks cancelled) by close."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.call(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
