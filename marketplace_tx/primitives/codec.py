"""Canonical msgpack encoding and strict decoding (PROTOCOL R1, R2).

Every structure that goes over the wire or under a hash is encoded by `encode` and
read back by `decode`. `decode` accepts only bytes that `encode` would have produced
for the decoded object, so every value has exactly one byte representation.
"""

from __future__ import annotations

from typing import Any

import msgpack

from marketplace_tx import speedups
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.primitives.limits import INT64_MIN, MAX_NESTING_DEPTH, UINT64_MAX

__all__ = ["INT64_MIN", "MAX_NESTING_DEPTH", "UINT64_MAX", "canonical_form", "check_canonical_structure", "decode", "encode"]


def encode(value: Any) -> bytes:
    """Return the canonical msgpack bytes of `value` (R1).

    Maps get their text keys sorted (Python's code point order equals UTF-8 byte
    order), tuples become arrays, `bytes` become `bin` and `str` becomes `str`.
    Floats, non-text keys, integers outside −2^63 … 2^64−1 and any other type
    raise `CodecError`. (Speed: `speedups.canonical_form` stands for `canonical_form`.)
    """
    try:
        return msgpack.packb(speedups.canonical_form(value, 0), use_bin_type=True)
    except UnicodeEncodeError:
        raise CodecError("malformed", "text is not valid UTF-8 (lone surrogate)") from None


def canonical_form(value: Any, depth: int = 0) -> Any:
    """The value msgpack packs for `value` at nesting `depth` (R1), or `CodecError`.

    Maps must have keys of type `str` and become maps in sorted key order; lists and
    tuples become lists; bytearray and memoryview become bytes; integers must lie in
    −2^63 … 2^64−1. The plain version of `speedups.canonical_form`, which `encode` uses.
    """
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        number = int(value)
        if number < INT64_MIN or number > UINT64_MAX:
            raise CodecError("malformed", f"integer {number} out of range")
        return number
    if isinstance(value, dict):
        for key in value:
            if type(key) is not str:
                raise CodecError("malformed", f"map key {key!r} is not text")
        return {key: canonical_form(value[key], depth + 1) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical_form(item, depth + 1) for item in value]
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise CodecError("malformed", f"type {type(value).__name__} cannot be encoded")


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
    speedups.check_canonical_structure(value, 0)
    try:
        reencoded = msgpack.packb(value, use_bin_type=True)
    except (ValueError, TypeError, OverflowError) as error:
        raise CodecError("malformed", f"not re-encodable: {error}") from None
    if reencoded != data:
        raise CodecError("malformed", "not canonical: the bytes differ from the canonical encoding")
    return value


def check_canonical_structure(value: Any, depth: int = 0) -> None:
    """Reject floats, non-text keys, unsorted or duplicate keys, types msgpack decodes
    that the protocol does not have, and nesting deeper than `MAX_NESTING_DEPTH` (R1, R2).

    The plain version of `speedups.check_canonical_structure`, which `decode` uses.
    """
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    if isinstance(value, float):
        raise CodecError("malformed", "floats are not allowed")
    if isinstance(value, dict):
        previous: str | None = None
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError("malformed", "map keys must be text")
            if previous is not None and key <= previous:
                raise CodecError("malformed", f"map key {key!r} is not in ascending order")
            previous = key
            check_canonical_structure(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_canonical_structure(item, depth + 1)
    elif not (value is None or isinstance(value, (str, bytes, int))):
        # msgpack decodes its Timestamp extension (type −1) without calling ext_hook.
        raise CodecError("malformed", f"type {type(value).__name__} is not allowed")
