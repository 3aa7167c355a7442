"""Canonical msgpack encoding and strict decoding (PROTOCOL R1, R2).

Every structure that goes over the wire or under a hash is encoded by `encode` and
read back by `decode`. `decode` accepts only bytes that `encode` would have produced
for the decoded object, so every value has exactly one byte representation.
"""

from __future__ import annotations

from typing import Any

import msgpack

from marketplace_tx.primitives.errors import CodecError

UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
MAX_NESTING_DEPTH = 32
"""Deepest nesting of maps and arrays any protocol structure needs, with margin."""


def encode(value: Any) -> bytes:
    """Return the canonical msgpack bytes of `value` (R1).

    Maps get their text keys sorted (Python's code point order equals UTF-8 byte
    order), tuples become arrays, `bytes` become `bin` and `str` becomes `str`.
    Floats, non-text keys, integers outside −2^63 … 2^64−1 and any other type
    raise `CodecError`.
    """
    try:
        return msgpack.packb(_canonical_form(value, 0), use_bin_type=True)
    except UnicodeEncodeError:
        raise CodecError("malformed", "text is not valid UTF-8 (lone surrogate)") from None


_PLAIN_TYPES = frozenset({bytes, str, bool, type(None)})
"""Exact types `_canonical_form` passes through unchanged (ints need a range check)."""


def _canonical_form(value: Any, depth: int) -> Any:
    # Exact-type dispatch first (the hot path: state records and transactions), then
    # the general isinstance checks for subclasses and the rarer types.
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    kind = type(value)
    if kind is bytes or kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value < INT64_MIN or value > UINT64_MAX:
            raise CodecError("malformed", f"integer {value} out of range")
        return value
    if kind is dict:
        return _canonical_map(value, depth)
    if kind is list or kind is tuple:
        return _canonical_array(value, depth)
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, int):
        return _canonical_form(int(value), depth)
    if isinstance(value, dict):
        return _canonical_form(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _canonical_form(list(value), depth)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise CodecError("malformed", f"type {type(value).__name__} cannot be encoded")


# Speed (STYLE: tricks in a clearly named place): the two helpers below give exactly
# what `{key: _canonical_form(value[key], depth + 1) for key in sorted(value)}` and
# `[_canonical_form(item, depth + 1) for item in value]` give, raising the same errors
# in the same order, but check plain items inline instead of calling per item, and
# hand back a map unchanged when its keys are already sorted and nothing in it changes.


def _canonical_map(value: dict, depth: int) -> dict:
    keys = list(value)
    for key in keys:
        if type(key) is not str:
            raise CodecError("malformed", f"map key {key!r} is not text")
    ordered = sorted(keys)
    if depth >= MAX_NESTING_DEPTH:
        return {key: _canonical_form(value[key], depth + 1) for key in ordered}
    unchanged = ordered == keys
    result = {}
    for key in ordered:
        item = value[key]
        kind = type(item)
        if kind is int:
            if item < INT64_MIN or item > UINT64_MAX:
                raise CodecError("malformed", f"integer {item} out of range")
        elif kind not in _PLAIN_TYPES:
            converted = _canonical_form(item, depth + 1)
            if converted is not item:
                unchanged = False
                item = converted
        result[key] = item
    return value if unchanged else result


def _canonical_array(value: list | tuple, depth: int) -> list:
    if depth >= MAX_NESTING_DEPTH:
        return [_canonical_form(item, depth + 1) for item in value]
    result = []
    append = result.append
    for item in value:
        kind = type(item)
        if kind is int:
            if item < INT64_MIN or item > UINT64_MAX:
                raise CodecError("malformed", f"integer {item} out of range")
        elif kind not in _PLAIN_TYPES:
            item = _canonical_form(item, depth + 1)
        append(item)
    return result


def _reject_extension(code: int, data: bytes) -> Any:
    raise CodecError("malformed", f"extension type {code} is not allowed")


def decode(data: bytes, max_length: int | None = None) -> Any:
    """Decode one canonical msgpack object from `data` or raise `CodecError` (R2).

    Rejected: trailing bytes, extension types, floats, non-text or duplicate or
    unsorted map keys, invalid UTF-8, non-shortest encodings of integers and
    lengths, and anything nested deeper than `MAX_NESTING_DEPTH`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("malformed", "expected bytes")
    data = bytes(data)
    if max_length is not None and len(data) > max_length:
        raise CodecError("malformed", f"{len(data)} bytes exceed the limit of {max_length}")
    if not data:
        raise CodecError("malformed", "empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_extension,
        )
    except CodecError:
        raise
    except msgpack.ExtraData:
        raise CodecError("malformed", "trailing bytes after the object") from None
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, MemoryError) as error:
        raise CodecError("malformed", f"not valid msgpack: {error}") from None
    except Exception as error:  # msgpack raises a handful of internal types
        raise CodecError("malformed", f"not valid msgpack: {error}") from None
    _check_canonical_structure(value, 0)
    try:
        reencoded = msgpack.packb(value, use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as error:
        raise CodecError("malformed", f"not re-encodable: {error}") from None
    if reencoded != data:
        raise CodecError("malformed", "not canonical: the bytes differ from the canonical encoding")
    return value


_SCALAR_TYPES = frozenset({bytes, str, int, bool, type(None)})
"""Exact types msgpack decodes that `_check_canonical_structure` accepts as they are."""


def _check_canonical_structure(value: Any, depth: int) -> None:
    """Reject floats, non-text keys and unsorted or duplicate keys (R1)."""
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    if isinstance(value, float):
        raise CodecError("malformed", "floats are not allowed")
    # Speed: items of a plain scalar type are accepted inline, without a call each
    # (the same outcome as the recursive call, which accepts them).
    inline = depth < MAX_NESTING_DEPTH
    if isinstance(value, dict):
        previous: str | None = None
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError("malformed", "map keys must be text")
            if previous is not None and key <= previous:
                raise CodecError("malformed", f"map key {key!r} is not in ascending order")
            previous = key
            if not (inline and type(item) in _SCALAR_TYPES):
                _check_canonical_structure(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if not (inline and type(item) in _SCALAR_TYPES):
                _check_canonical_structure(item, depth + 1)
    elif not (value is None or isinstance(value, (str, bytes, int))):
        # msgpack decodes its Timestamp extension (type −1) without calling ext_hook.
        raise CodecError("malformed", f"type {type(value).__name__} is not allowed")


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this node wrote itself after `encode` (committed state, its own
    indexes): no canonical re-check. Never use it on bytes from a peer or a client."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
