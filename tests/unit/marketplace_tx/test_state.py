"""The journaled state view: nested begin/commit/rollback, scan, net changes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx.rules.state import MemoryStateReader, State


def make_state(values: dict[bytes, bytes] | None = None) -> State:
    return State(MemoryStateReader(values or {b"a": b"1", b"b": b"2", b"d": b"4"}))


def snapshot(state: State) -> dict[bytes, bytes]:
    return dict(state.scan(b"", b"\xff" * 4))


# --------------------------------------------------------------------------- reads and writes


def test_reads_fall_through_to_the_base() -> None:
    state = make_state()
    assert state.get(b"a") == b"1"
    assert state.get(b"zz") is None
    state.put(b"a", b"one")
    state.put(b"c", b"3")
    state.delete(b"b")
    assert state.get(b"a") == b"one"
    assert state.get(b"c") == b"3"
    assert state.get(b"b") is None
    # the base is never written by State
    assert state.base.values == {b"a": b"1", b"b": b"2", b"d": b"4"}


# --------------------------------------------------------------------------- journaling


def test_rollback_undoes_puts_and_deletes() -> None:
    state = make_state()
    state.put(b"x", b"before")
    state.begin()
    state.put(b"a", b"changed")
    state.put(b"x", b"changed")
    state.put(b"new", b"value")
    state.delete(b"b")
    state.delete(b"x")
    state.rollback()
    assert snapshot(state) == {b"a": b"1", b"b": b"2", b"d": b"4", b"x": b"before"}
    assert state.changes() == {b"x": b"before"}


def test_rollback_restores_the_value_before_begin_after_many_writes() -> None:
    state = make_state()
    state.begin()
    for value in (b"v1", b"v2", b"v3"):
        state.put(b"a", value)
    state.delete(b"a")
    state.put(b"a", b"v4")
    state.rollback()
    assert state.get(b"a") == b"1"
    assert state.changes() == {}


def test_commit_keeps_writes() -> None:
    state = make_state()
    state.begin()
    state.put(b"a", b"kept")
    state.delete(b"d")
    state.commit()
    assert state.get(b"a") == b"kept"
    assert state.get(b"d") is None
    assert state.changes() == {b"a": b"kept", b"d": None}


def test_inner_commit_then_outer_rollback_undoes_both() -> None:
    state = make_state()
    state.begin()
    state.put(b"a", b"outer")
    state.begin()
    state.put(b"a", b"inner")
    state.put(b"c", b"inner")
    state.delete(b"b")
    state.commit()
    assert state.get(b"a") == b"inner"
    state.rollback()
    assert snapshot(state) == {b"a": b"1", b"b": b"2", b"d": b"4"}
    assert state.changes() == {}


def test_inner_rollback_keeps_outer_writes() -> None:
    state = make_state()
    state.begin()
    state.put(b"a", b"outer")
    state.put(b"c", b"outer")
    state.begin()
    state.put(b"a", b"inner")
    state.delete(b"c")
    state.put(b"e", b"inner")
    state.rollback()
    assert state.get(b"a") == b"outer"
    assert state.get(b"c") == b"outer"
    assert state.get(b"e") is None
    state.commit()
    assert state.changes() == {b"a": b"outer", b"c": b"outer"}


def test_three_levels() -> None:
    state = make_state()
    state.begin()
    state.put(b"k1", b"level1")
    state.begin()
    state.put(b"k2", b"level2")
    state.begin()
    state.put(b"k3", b"level3")
    state.rollback()
    state.commit()
    state.begin()
    state.put(b"k4", b"level2b")
    state.rollback()
    state.commit()
    assert state.changes() == {b"k1": b"level1", b"k2": b"level2"}


def test_changes_inside_an_open_transaction_is_refused() -> None:
    state = make_state()
    state.begin()
    with pytest.raises(RuntimeError):
        state.changes()
    state.commit()
    assert state.changes() == {}


# --------------------------------------------------------------------------- scan


def test_scan_merges_base_and_overlay() -> None:
    state = make_state({b"a1": b"base", b"a3": b"base", b"a5": b"base", b"b1": b"other"})
    state.put(b"a2", b"new")
    state.put(b"a3", b"overwritten")
    state.delete(b"a5")
    state.put(b"a6", b"new")
    state.delete(b"a7")  # never existed
    state.put(b"b0", b"outside")
    assert list(state.scan(b"a", b"b")) == [
        (b"a1", b"base"),
        (b"a2", b"new"),
        (b"a3", b"overwritten"),
        (b"a6", b"new"),
    ]


def test_scan_bounds_are_half_open() -> None:
    state = make_state({b"a": b"1", b"b": b"2", b"c": b"3"})
    state.put(b"bb", b"x")
    state.put(b"c", b"y")
    assert [key for key, _ in state.scan(b"b", b"c")] == [b"b", b"bb"]
    assert list(state.scan(b"c", b"c")) == []


def test_scan_sees_only_surviving_writes_after_rollback() -> None:
    state = make_state({b"a1": b"base"})
    state.begin()
    state.put(b"a2", b"rolled back")
    state.delete(b"a1")
    state.rollback()
    assert list(state.scan(b"a", b"b")) == [(b"a1", b"base")]


def test_scan_when_every_base_key_is_deleted() -> None:
    state = make_state({b"a1": b"x", b"a2": b"y"})
    state.delete(b"a1")
    state.delete(b"a2")
    assert list(state.scan(b"a", b"b")) == []
    state.put(b"a2", b"z")
    assert list(state.scan(b"a", b"b")) == [(b"a2", b"z")]


# --------------------------------------------------------------------------- net changes


def test_writing_back_the_original_value_is_no_change() -> None:
    state = make_state()
    state.put(b"a", b"other")
    state.put(b"a", b"1")
    state.put(b"new", b"x")
    state.delete(b"new")
    state.delete(b"never")
    state.delete(b"b")
    state.put(b"b", b"2")
    assert state.changes() == {}


def test_changes_report_puts_and_deletions() -> None:
    state = make_state()
    state.put(b"a", b"changed")
    state.put(b"c", b"created")
    state.delete(b"d")
    assert state.changes() == {b"a": b"changed", b"c": b"created", b"d": None}


def test_memory_reader_apply() -> None:
    reader = MemoryStateReader({b"a": b"1", b"b": b"2"})
    reader.apply({b"a": b"one", b"b": None, b"c": b"3", b"zz": None})
    assert reader.values == {b"a": b"one", b"c": b"3"}
    assert list(reader.scan(b"a", b"c")) == [(b"a", b"one")]


# --------------------------------------------------------------------------- model check

keys = st.sampled_from([b"k0", b"k1", b"k2", b"k3", b"k4"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, st.sampled_from([b"v0", b"v1", b"v2"])),
        st.tuples(st.just("delete"), keys, st.none()),
        st.tuples(st.just("begin"), st.none(), st.none()),
        st.tuples(st.just("commit"), st.none(), st.none()),
        st.tuples(st.just("rollback"), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_state_matches_a_stack_of_dict_copies(ops: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Compare State with a naive model: each `begin` pushes a full copy of the view."""
    base = {b"k0": b"v0", b"k2": b"v2"}
    state = State(MemoryStateReader(base))
    model = [dict(base)]
    for op, key, value in ops:
        if op == "put":
            assert key is not None and value is not None
            state.put(key, value)
            model[-1][key] = value
        elif op == "delete":
            assert key is not None
            state.delete(key)
            model[-1].pop(key, None)
        elif op == "begin":
            state.begin()
            model.append(dict(model[-1]))
        elif len(model) > 1:
            if op == "commit":
                state.commit()
                top = model.pop()
                model[-1] = top
            else:
                state.rollback()
                model.pop()
        assert dict(state.scan(b"", b"\xff")) == model[-1]
        for probe in (b"k0", b"k1", b"k2", b"k3", b"k4"):
            assert state.get(probe) == model[-1].get(probe)
    while len(model) > 1:
        state.commit()
        top = model.pop()
        model[-1] = top
    expected = {key: model[0].get(key) for key in set(base) | set(model[0]) if base.get(key) != model[0].get(key)}
    assert state.changes() == expected
