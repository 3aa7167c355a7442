"""Fuzzing of the canonical msgpack codec (PROTOCOL R1, R2).

`decode` refuses anything not canonical with CodecError `malformed`; what it accepts
re-encodes to the input, and any value `encode` accepts decodes back to itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError
from tests.fuzz.strategies import (
    ANY_TEXT,
    COUNTS,
    codec_values,
    fuzz_settings,
    iteration_report,
    loose_msgpack,
    mutated,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_codec.py")


@fuzz_settings(1200)
@given(data=st.binary(max_size=200) | loose_msgpack | mutated(codec_values.map(codec.encode)))
def test_codec_decode(data: bytes) -> None:
    """R1, R2: `decode` raises only CodecError, and what it accepts re-encodes to the input."""
    COUNTS["codec.decode"] += 1
    try:
        value = codec.decode(data)
    except CodecError as error:
        assert error.code == "malformed"
        return
    assert codec.encode(value) == data
    with pytest.raises(CodecError):
        codec.decode(data + b"\xc0")  # R2: trailing bytes


@fuzz_settings(200)
@given(value=codec_values)
def test_codec_round_trip_and_length_limit(value: Any) -> None:
    COUNTS["codec.decode (round trip, max_length)"] += 1
    data = codec.encode(value)
    assert codec.decode(data) == value
    with pytest.raises(CodecError):
        codec.decode(data, max_length=len(data) - 1)


@fuzz_settings(100)
@given(value=st.none() | st.integers() | ANY_TEXT | st.lists(st.integers(0, 255), max_size=4))
def test_codec_decode_refuses_non_bytes(value: Any) -> None:
    COUNTS["codec.decode (non-bytes input)"] += 1
    with pytest.raises(CodecError):
        codec.decode(value)
