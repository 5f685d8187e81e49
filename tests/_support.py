"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from typing import Any


def poll(condition: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Return ``condition()`` once it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
