"""JSON views of protocol values: bytes become lowercase hex (PROTOCOL R5)."""

from __future__ import annotations

from typing import Any


def to_json(value: Any) -> Any:
    """A JSON-ready copy of a msgpack value, every `bytes` as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value
