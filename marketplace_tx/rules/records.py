"""Storing frozen dataclass records in state as canonical maps.

A record's map has one key per field; a field that is None or an empty tuple is
omitted (R1: an absent optional field is an absent key, an empty optional list is
omitted). Tuples are stored as arrays and read back as tuples.
"""

from __future__ import annotations

from typing import Any, TypeVar

from marketplace_tx.primitives import codec
from marketplace_tx.rules.state import State
from marketplace_tx.speedups import decode_trusted

RecordType = TypeVar("RecordType")


def record_to_map(record: Any) -> dict[str, Any]:
    """The canonical map of a dataclass record."""
    result: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if value is None or value == ():
            continue
        result[name] = list(value) if type(value) is tuple else value
    return result


def record_from_map(record_type: type[RecordType], value: dict[str, Any]) -> RecordType:
    """Rebuild a record from its map (arrays become tuples)."""
    return record_type(**{key: tuple(item) if isinstance(item, list) else item for key, item in value.items()})


def load_record(state: State, key: bytes, record_type: type[RecordType]) -> RecordType | None:
    """The record stored under `key`, or None."""
    raw = state.get(key)
    return None if raw is None else record_from_map(record_type, decode_trusted(raw))


def store_record(state: State, key: bytes, record: Any) -> None:
    """Write a record under `key`."""
    state.put(key, codec.encode(record_to_map(record)))
