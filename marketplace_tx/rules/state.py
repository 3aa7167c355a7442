"""The application state interface: a journaled key-value view (STYLE: begin/commit/rollback).

Rules read and write state only through `State`. It layers uncommitted writes over a
`StateReader` (the committed state: LevelDB in a node, a dict in tests), supports
nested `begin`/`commit`/`rollback`, and reports the block's net changes so storage
can write them in one atomic batch and `state_root` can commit to them (R23).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from marketplace_tx.rules.state_tree import MemoryTree, TreeUpdate, update_tree

_ABSENT = object()


class StateReader(Protocol):
    """Read access to committed state, implemented by storage."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""
        ...

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) with start ≤ key < end, in ascending key order."""
        ...

    def tree_node(self, position: bytes) -> bytes | None:
        """The state tree's record at `position` (marketplace_tx.rules.state_tree, R35)."""
        ...


class MemoryStateReader:
    """A `StateReader` over a dict, with its state tree, for tests and tools."""

    def __init__(self, values: dict[bytes, bytes] | None = None) -> None:
        self.values: dict[bytes, bytes] = dict(values or {})
        """The committed key-value pairs."""
        self.tree = MemoryTree()
        """The state tree over `values` (R35)."""
        if self.values:
            self.tree.apply(update_tree(self.tree, self.values))

    def tree_node(self, position: bytes) -> bytes | None:
        """The tree's record at `position`."""
        return self.tree.tree_node(position)

    def get(self, key: bytes) -> bytes | None:
        """The value under `key`, or None."""
        return self.values.get(key)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with start ≤ key < end, ascending."""
        for key in sorted(key for key in self.values if start <= key < end):
            yield key, self.values[key]

    def apply(self, changes: dict[bytes, bytes | None], tree: TreeUpdate | None = None) -> None:
        """Write a change set (None deletes) and update the tree (`tree`: its update, if known)."""
        self.tree.apply(update_tree(self.tree, changes) if tree is None else tree)
        for key, value in changes.items():
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value


class State:
    """Uncommitted state over a committed base, with nested transactions."""

    def __init__(self, base: StateReader) -> None:
        self.base = base
        """The committed state this view starts from."""
        self._writes: dict[bytes, bytes | None] = {}
        self._journals: list[list[tuple[bytes, object]]] = []

    def get(self, key: bytes) -> bytes | None:
        """The current value under `key`, or None."""
        value = self._writes.get(key, _ABSENT)
        if value is _ABSENT:
            return self.base.get(key)
        return value  # type: ignore[return-value]

    def put(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""
        self._record(key)
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        self._record(key)
        self._writes[key] = None

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Current pairs with start ≤ key < end, ascending, uncommitted writes included."""
        pending = sorted(key for key in self._writes if start <= key < end)
        base_items = self.base.scan(start, end)
        next_base = next(base_items, None)
        index = 0
        while next_base is not None or index < len(pending):
            if index < len(pending) and (next_base is None or pending[index] <= next_base[0]):
                key = pending[index]
                index += 1
                if next_base is not None and next_base[0] == key:
                    next_base = next(base_items, None)
                value = self._writes[key]
                if value is not None:
                    yield key, value
            else:
                assert next_base is not None
                yield next_base
                next_base = next(base_items, None)

    def _record(self, key: bytes) -> None:
        if self._journals:
            self._journals[-1].append((key, self._writes.get(key, _ABSENT)))

    def begin(self) -> None:
        """Open a nested transaction: later writes can be undone by `rollback`."""
        self._journals.append([])

    def commit(self) -> None:
        """Keep the writes of the innermost transaction."""
        journal = self._journals.pop()
        if self._journals:
            self._journals[-1].extend(journal)

    def rollback(self) -> None:
        """Undo every write since the matching `begin`."""
        journal = self._journals.pop()
        for key, previous in reversed(journal):
            if previous is _ABSENT:
                del self._writes[key]
            else:
                self._writes[key] = previous  # type: ignore[assignment]

    def changes(self) -> dict[bytes, bytes | None]:
        """Net changes against the base: keys whose value differs, None for deletions."""
        if self._journals:
            raise RuntimeError("changes() inside an open transaction")
        result: dict[bytes, bytes | None] = {}
        for key, value in self._writes.items():
            if self.base.get(key) != value:
                result[key] = value
        return result
