"""Canonical msgpack: encoding and strict decoding (PROTOCOL R1, R2)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.codec import MAX_NESTING_DEPTH, decode, encode
from marketplace_tx.primitives.errors import CodecError

# --------------------------------------------------------------------------- helpers


def same(left: Any, right: Any) -> bool:
    """Structural equality that also tells bool from int and bytes from str."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == sorted(left) and sorted(left) == sorted(right) and all(
            same(left[key], right[key]) for key in left
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return left == right


def depth_of(value: Any) -> int:
    """Nesting depth as the codec counts it: a scalar at the top is depth 0."""
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0


def nested_lists(levels: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=codec.INT64_MIN, max_value=codec.UINT64_MAX),
    st.integers(min_value=-40, max_value=300),  # the fixint / uint8 / int8 boundaries
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=6), children, max_size=6),
    ),
    max_leaves=25,
).filter(lambda value: depth_of(value) <= MAX_NESTING_DEPTH)


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cf0000000100000000"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (-(2**63), "d38000000000000000"),
    ],
)
def test_integers_use_the_shortest_encoding(value: int, expected_hex: str) -> None:
    assert encode(value).hex() == expected_hex
    assert decode(bytes.fromhex(expected_hex)) == value


@pytest.mark.parametrize(
    ("value", "expected_prefix_hex"),
    [
        ("", "a0"),
        ("a" * 31, "bf"),
        ("a" * 32, "d920"),
        ("a" * 255, "d9ff"),
        ("a" * 256, "da0100"),
        (b"", "c400"),
        (b"x" * 255, "c4ff"),
        (b"x" * 256, "c50100"),
        ([0] * 15, "9f"),
        ([0] * 16, "dc0010"),
        ({f"k{i:02}": 0 for i in range(15)}, "8f"),
        ({f"k{i:02}": 0 for i in range(16)}, "de0010"),
    ],
)
def test_lengths_use_the_shortest_encoding(value: Any, expected_prefix_hex: str) -> None:
    raw = encode(value)
    assert raw.hex().startswith(expected_prefix_hex)
    assert same(decode(raw), value)


def test_constants_and_types() -> None:
    assert encode(None) == b"\xc0"
    assert encode(True) == b"\xc3"
    assert encode(False) == b"\xc2"
    assert encode("abc") == b"\xa3abc"
    assert encode(b"abc") == b"\xc4\x03abc"
    assert encode(bytearray(b"abc")) == b"\xc4\x03abc"
    assert encode(memoryview(b"abc")) == b"\xc4\x03abc"
    assert encode((1, 2)) == encode([1, 2]) == b"\x92\x01\x02"


def test_map_keys_are_sorted() -> None:
    assert encode({"b": 1, "a": 2}).hex() == "82a161" "02" "a162" "01"
    assert encode({"b": {"d": 1, "c": 2}, "a": []}) == encode({"a": [], "b": {"c": 2, "d": 1}})


def test_map_keys_are_sorted_by_utf8_bytes() -> None:
    keys = ["é", "z", "a", "\uffff", "\U00010000", "Z", "aa", "茶"]
    raw = encode(dict.fromkeys(keys, 0))
    decoded = decode(raw)
    assert list(decoded) == sorted(keys, key=lambda key: key.encode("utf-8"))
    assert list(decoded)[:4] == ["Z", "a", "aa", "z"]


def test_encoding_matches_msgpack_for_sorted_maps() -> None:
    """R1 defines canonical as msgpack.packb(use_bin_type=True) of a key-sorted dict."""
    value = {"amount": 1234567, "memo": "茶叶 tea", "to": b"\x01" * 32, "neg": -5, "ok": True}
    expected = msgpack.packb(dict(sorted(value.items())), use_bin_type=True)
    assert encode(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        0.0,
        {"a": 1.0},
        [float("nan")],
        {1: "x"},
        {b"k": 1},
        {None: 1},
        {("a",): 1},
        2**64,
        -(2**63) - 1,
        {"a": [2**64]},
        {1, 2},
        object(),
        1j,
    ],
    ids=lambda value: type(value).__name__ if type(value) is object else repr(value),
)
def test_encode_rejects_what_r1_forbids(value: Any) -> None:
    with pytest.raises(CodecError) as error:
        encode(value)
    assert error.value.code == "malformed"


def test_encode_limits_nesting() -> None:
    encode(nested_lists(MAX_NESTING_DEPTH, []))
    encode(nested_lists(MAX_NESTING_DEPTH, 1))
    with pytest.raises(CodecError):
        encode(nested_lists(MAX_NESTING_DEPTH + 1, []))
    with pytest.raises(CodecError):
        encode(nested_lists(MAX_NESTING_DEPTH + 1, 1))


# --------------------------------------------------------------------------- decoding


def test_decode_accepts_canonical_values() -> None:
    assert decode(b"\x05") == 5
    assert decode(b"\xcc\x80") == 128
    assert decode(b"\x82\xa1a\x01\xa1b\x02") == {"a": 1, "b": 2}
    assert decode(b"\xc0") is None
    assert decode(b"\x92\x01\x90") == [1, []]


REJECTED = {
    # non-canonical integers
    "uint8 for 5": "cc05",
    "uint16 for 5": "cd0005",
    "uint32 for 5": "ce00000005",
    "uint64 for 5": "cf0000000000000005",
    "uint16 for 255": "cd00ff",
    "uint32 for 65535": "ce0000ffff",
    "uint64 for 2^32-1": "cf00000000ffffffff",
    "int8 for 5": "d005",
    "int8 for 127": "d07f",
    "int8 for -1": "d0ff",
    "int16 for -128": "d1ff80",
    "int16 for 200": "d100c8",
    "int64 for -5": "d3fffffffffffffffb",
    # map keys
    "unsorted keys": "82a162" "01" "a161" "02",
    "unsorted nested keys": "81a178" "82a162" "01" "a161" "02",
    "duplicate keys": "82a161" "01" "a161" "02",
    "duplicate keys same value": "82a161" "01" "a161" "01",
    "bin key": "81c40161" "01",
    "int key": "8101" "01",
    "nil key": "81c0" "01",
    "bool key": "81c3" "01",
    "array key": "819101" "01",
    # floats
    "float32": "ca00000000",
    "float32 one": "ca3f800000",
    "float64": "cb0000000000000000",
    "float64 in a map": "81a161cb3ff0000000000000",
    # extension types
    "fixext1": "d40100",
    "fixext2": "d5010000",
    "fixext16": "d801" + "00" * 16,
    "ext8": "c70301" + "000000",
    "ext8 empty": "c70001",
    "ext16": "c8000101" + "00",
    "ext32": "c90000000101" + "00",
    # framing
    "trailing byte": "0102",
    "trailing nil": "81a16101c0",
    "empty input": "",
    "truncated uint16": "cd01",
    "truncated map": "82a16101",
    "truncated str": "a3616263"[:-2],
    "never-used 0xc1": "c1",
    # strings
    "invalid utf-8": "a1ff",
    "utf-8 overlong": "a2c0af",
    "utf-8 surrogate": "a3eda080",
    "utf-8 truncated": "a2e88c",
    "str8 for a short string": "d903616263",
    "str8 for empty string": "d900",
    "str16 for a short string": "da0003616263",
    "str32 for a short string": "db00000003616263",
    # bin, arrays, maps with long length prefixes
    "bin16 for short bytes": "c50001ff",
    "bin32 for short bytes": "c600000001ff",
    "array16 for one item": "dc000101",
    "array32 for one item": "dd0000000101",
    "map16 for one entry": "de0001a16101",
    "map32 for one entry": "df00000001a16101",
}


@pytest.mark.parametrize("hex_bytes", list(REJECTED.values()), ids=list(REJECTED))
def test_decode_rejects_non_canonical_input(hex_bytes: str) -> None:
    with pytest.raises(CodecError) as error:
        decode(bytes.fromhex(hex_bytes))
    assert error.value.code == "malformed"


def test_decode_messages_name_the_problem() -> None:
    cases = {
        "82a16201a16102": "ascending",
        "81c4016101": "text",
        "ca00000000": "float",
        "d40100": "extension",
        "0102": "trailing",
        "": "empty",
        "cc05": "canonical",
    }
    for hex_bytes, word in cases.items():
        with pytest.raises(CodecError, match=word):
            decode(bytes.fromhex(hex_bytes))


@pytest.mark.parametrize("hex_bytes", ["d6ff00000001", "d7ff" + "0000000400000000"])
def test_decode_rejects_the_timestamp_extension(hex_bytes: str) -> None:
    with pytest.raises(CodecError):
        decode(bytes.fromhex(hex_bytes))


@pytest.mark.parametrize("value", ["\ud800", {"\udfff": 1}, ["ok", "\ud83d"]], ids=repr)
def test_encode_rejects_lone_surrogates_with_codec_error(value: Any) -> None:
    with pytest.raises(CodecError):
        encode(value)


def test_bin_and_str_are_distinct() -> None:
    as_bin = decode(b"\xc4\x03abc")
    as_str = decode(b"\xa3abc")
    assert type(as_bin) is bytes and as_bin == b"abc"
    assert type(as_str) is str and as_str == "abc"
    assert encode(b"abc") != encode("abc")
    # binary data smuggled in a str header is not UTF-8 and is refused
    with pytest.raises(CodecError):
        decode(b"\xa2\xff\xfe")
    # a bin key is refused even though msgpack could represent it
    with pytest.raises(CodecError):
        decode(b"\x81\xc4\x01a\x01")


def test_decode_limits_nesting() -> None:
    deepest_allowed = b"\x91" * MAX_NESTING_DEPTH + b"\x90"
    assert decode(deepest_allowed) == nested_lists(MAX_NESTING_DEPTH, [])
    with pytest.raises(CodecError, match="deep"):
        decode(b"\x91" * (MAX_NESTING_DEPTH + 1) + b"\x90")
    with pytest.raises(CodecError, match="deep"):
        decode(b"\x81\xa1a" * (MAX_NESTING_DEPTH + 1) + b"\x01")
    # far deeper than any recursion limit: still a CodecError, never RecursionError
    with pytest.raises(CodecError):
        decode(b"\x91" * 100_000 + b"\x90")


def test_decode_max_length() -> None:
    raw = encode("x" * 10)
    assert decode(raw, max_length=len(raw)) == "x" * 10
    with pytest.raises(CodecError, match="limit"):
        decode(raw, max_length=len(raw) - 1)


@pytest.mark.parametrize("value", ["05", 5, None, [5]], ids=repr)
def test_decode_requires_bytes(value: Any) -> None:
    with pytest.raises(CodecError):
        decode(value)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode(bytearray(b"\x92\x01\x02")) == [1, 2]
    assert decode(memoryview(b"\xa1a")) == "a"


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_round_trip(value: Any) -> None:
    raw = encode(value)
    decoded = decode(raw)
    assert same(decoded, _sorted_maps(value))
    assert encode(decoded) == raw


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6), scalars, min_size=2, max_size=8))
def test_key_insertion_order_does_not_matter(value: dict[str, Any]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert encode(reversed_value) == encode(value)


def _sorted_maps(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_maps(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_maps(item) for item in value]
    return value


def _decode_or_none(data: bytes) -> None:
    try:
        value = decode(data)
    except CodecError:
        return
    assert encode(value) == data


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_random_bytes_decode_strictly(data: bytes) -> None:
    _decode_or_none(data)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode(draw(values)))
    action = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "append"]))
    position = draw(st.integers(min_value=0, max_value=len(raw)))
    byte = draw(st.integers(min_value=0, max_value=255))
    if action == "replace" and position < len(raw):
        raw[position] = byte
    elif action == "insert":
        raw.insert(position, byte)
    elif action == "delete" and position < len(raw):
        del raw[position]
    elif action == "truncate":
        del raw[position:]
    else:
        raw.append(byte)
    return bytes(raw)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(mutated_encodings())
def test_mutated_encodings_decode_strictly(data: bytes) -> None:
    _decode_or_none(data)
