"""The codec's speed tricks give exactly what the plain codec gives (PROTOCOL R1, R2).

- `speedups.canonical_form` (used by `codec.encode`) against `codec.canonical_form`:
  the same packed bytes, or the same `CodecError` message, for random structures of
  every type `encode` meets (subclasses, byte views, floats, sets, non-text keys,
  out-of-range integers, nesting around `MAX_NESTING_DEPTH`).
- `speedups.check_canonical_structure` (used by `codec.decode`) against
  `codec.check_canonical_structure`: the same verdict on random decoded-looking values
  (unsorted, duplicate-looking and non-text keys, floats, tuples, msgpack Timestamps).
- `speedups.decode_trusted` (state reads) against `codec.decode` on bytes `encode` made.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx import speedups
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.primitives.limits import INT64_MIN, MAX_NESTING_DEPTH, UINT64_MAX
from tests.unit.marketplace_tx.test_codec import values as encodable_values


class Colour(enum.IntEnum):
    """An int subclass: encoded as its integer value."""

    RED = 1
    HUGE = 2**64


class Text(str):
    """A str subclass: accepted as a value, refused as a map key."""


def outcome_of_form(form: Any, value: Any) -> tuple[str, Any]:
    """("bytes", packed canonical form) or ("error", message) for one version of the form."""
    try:
        return "bytes", msgpack.packb(form(value, 0), use_bin_type=True)
    except CodecError as error:
        assert error.code == "malformed"
        return "error", error.message


def outcome_of_check(check: Any, value: Any) -> str | None:
    """None when the value passes, else the `CodecError` message."""
    try:
        check(value, 0)
    except CodecError as error:
        assert error.code == "malformed"
        return error.message
    return None


# --------------------------------------------------------------------------- canonical_form

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN - 3, max_value=UINT64_MAX + 3),
    st.integers(min_value=-40, max_value=300),
    st.sampled_from([INT64_MIN - 1, INT64_MIN, UINT64_MAX, UINT64_MAX + 1, Colour.RED, Colour.HUGE]),
    st.text(max_size=8),
    st.text(max_size=8).map(Text),
    st.binary(max_size=8),
    st.binary(max_size=8).map(bytearray),
    st.binary(max_size=8).map(memoryview),
    st.floats(allow_nan=False),
    st.sampled_from([set(), frozenset({1}), object()]),
)
keys = st.one_of(
    st.text(max_size=4),
    st.text(max_size=4),
    st.text(max_size=4).map(Text),
    st.integers(0, 3),
    st.binary(max_size=2),
    st.none(),
)
containers = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=5),
        st.dictionaries(keys, children, max_size=4),
        st.dictionaries(st.text(max_size=4), children, max_size=4).map(OrderedDict),
    ),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(containers)
def test_hypothesis_fast_canonical_form_equals_the_plain_one(value: Any) -> None:
    assert outcome_of_form(speedups.canonical_form, value) == outcome_of_form(codec.canonical_form, value)


@settings(max_examples=300, deadline=None)
@given(encodable_values)
def test_hypothesis_encode_packs_the_plain_canonical_form(value: Any) -> None:
    assert codec.encode(value) == msgpack.packb(codec.canonical_form(value), use_bin_type=True)


def nested(levels: int, leaf: Any, as_map: bool) -> Any:
    """`leaf` inside `levels` lists (or one-key maps)."""
    value = leaf
    for _ in range(levels):
        value = {"k": value} if as_map else [value]
    return value


@pytest.mark.parametrize("as_map", [False, True], ids=["lists", "maps"])
@pytest.mark.parametrize("levels", range(MAX_NESTING_DEPTH - 2, MAX_NESTING_DEPTH + 3))
@pytest.mark.parametrize("leaf", [[], {}, 1, "x", None, (1,), 2**64, 1.5], ids=repr)
def test_nesting_limits_are_the_same_in_both_versions(levels: int, leaf: Any, as_map: bool) -> None:
    value = nested(levels, leaf, as_map)
    assert outcome_of_form(speedups.canonical_form, value) == outcome_of_form(codec.canonical_form, value)


def test_the_versions_agree_on_every_kind_of_failure() -> None:
    """Each failure once, by name: both raise the same message (so the tests above compare errors)."""
    failures = {
        "integer": [1, UINT64_MAX + 1],
        "int subclass": [Colour.HUGE],
        "map key": {"a": 1, 2: 3},
        "text subclass key": {Text("a"): 1},
        "float": {"b": 1.5},
        "set": [set()],
        "deep": nested(MAX_NESTING_DEPTH + 1, [], as_map=False),
    }
    for name, value in failures.items():
        fast = outcome_of_form(speedups.canonical_form, value)
        assert fast[0] == "error", name
        assert fast == outcome_of_form(codec.canonical_form, value), name


# --------------------------------------------------------------------------- check_canonical_structure

decoded_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.floats(allow_nan=False),
    st.just(msgpack.Timestamp(1, 0)),
    st.just((1, 2)),
)
decoded_values = st.recursive(
    decoded_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=3), children, max_size=5),  # insertion order: often unsorted
        st.dictionaries(st.text(max_size=3), children, max_size=5).map(lambda value: dict(sorted(value.items()))),
        st.dictionaries(st.one_of(st.text(max_size=2), st.binary(max_size=2), st.integers(0, 2)), children, max_size=3),
    ),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(decoded_values)
def test_hypothesis_fast_structure_check_equals_the_plain_one(value: Any) -> None:
    fast = outcome_of_check(speedups.check_canonical_structure, value)
    assert fast == outcome_of_check(codec.check_canonical_structure, value)


@pytest.mark.parametrize("as_map", [False, True], ids=["lists", "maps"])
@pytest.mark.parametrize("levels", range(MAX_NESTING_DEPTH - 2, MAX_NESTING_DEPTH + 3))
@pytest.mark.parametrize("leaf", [[], {}, 1, "x", None, 1.5], ids=repr)
def test_structure_check_nesting_is_the_same_in_both_versions(levels: int, leaf: Any, as_map: bool) -> None:
    value = nested(levels, leaf, as_map)
    fast = outcome_of_check(speedups.check_canonical_structure, value)
    assert fast == outcome_of_check(codec.check_canonical_structure, value)
    assert (fast is not None) == (levels > MAX_NESTING_DEPTH or leaf == 1.5)


def test_structure_check_failures_are_the_same_in_both_versions() -> None:
    failures = [{"b": 1, "a": 2}, {"a": 1.5}, {"a": [(1,)]}, [msgpack.Timestamp(0, 0)], {b"k": 1}]
    for value in failures:
        fast = outcome_of_check(speedups.check_canonical_structure, value)
        assert fast is not None, value
        assert fast == outcome_of_check(codec.check_canonical_structure, value), value


# --------------------------------------------------------------------------- decode_trusted


@settings(max_examples=400, deadline=None)
@given(encodable_values)
def test_hypothesis_trusted_decode_equals_strict_decode_on_own_bytes(value: Any) -> None:
    data = codec.encode(value)
    trusted = speedups.decode_trusted(data)
    assert trusted == codec.decode(data)
    assert codec.encode(trusted) == data
