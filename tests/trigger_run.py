"""Run a trigger the way the triggerer does, in the test's own event loop."""

from __future__ import annotations

import asyncio
from typing import Any


def first_event(trigger: Any) -> dict[str, Any]:
    """The payload of the first event ``trigger.run()`` yields (an AssertionError if it yields none)."""
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(run())
