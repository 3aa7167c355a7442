"""State proofs at the head and at recent heights, and the change points of the
validator set, read from the node's LevelDB (R36, R37, R38, R40).

Only the current state tree is stored (`Dn`, node/storage.py). A proof at an older
height H rebuilds, in memory, the tree nodes that blocks H+1 … head changed: their undo
records (`Du`) give every changed key's value at H (the oldest record naming a key
wins), `update_tree` applies those values over the stored tree, and the proof is made
on that overlay. The rebuilt root must equal header H's `state_root`, or nothing is
served. The cost grows with the keys changed since H, bounded by `keep_state` blocks:
a client asking for old heights must be charged for it (node/http/costs.py).

Everything one call returns is read from ONE LevelDB snapshot (`ChainStore.read_view`),
so a block committed meanwhile never mixes two versions into one answer.
"""

from __future__ import annotations

import threading

from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import InvalidProof, StateProof, verify_state_proof
from marketplace_tx.rules.state_tree import OverlayTreeReader, TreeReader, prove_key, update_tree
from node.storage import ChainStore, ReadView, StorageError

MAX_CONCURRENT_REBUILDS = 1
"""Old-height proofs rebuilding a tree at once, per process: each holds, in memory, every
node on the paths of the keys changed since its height (about 900 bytes per changed key,
measured),
so this bounds that memory and keeps them from taking both cores; the others wait."""
_rebuilds = threading.BoundedSemaphore(MAX_CONCURRENT_REBUILDS)


class ProofUnavailable(Exception):
    """A state proof or header the node cannot give: `code` is `pruned` (older than the
    node keeps, R40: HTTP 410) or `not_found` (above the head: HTTP 404)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        """`pruned` or `not_found` (R12 error codes)."""
        self.message = message
        """What is unavailable and what the node keeps."""


def oldest_provable_height(store: ChainStore) -> int:
    """The oldest height whose state the node can still prove (R40)."""
    with store.read_view() as view:
        return _oldest_provable(view, store.keep_state)


def changed_key_count(store: ChainStore, height: int, head_height: int) -> int:
    """How many keys blocks `height`+1 … `head_height` changed (with repeats): the size of the
    rebuild `prove_state` needs at `height`, counted without decoding the undo records."""
    with store.read_view() as view:
        return view.undo_entry_count(height + 1, head_height)


def _oldest_provable(view: ReadView, keep_state: int) -> int:
    """The oldest provable height as of `view`: within the last `keep_state` heights, and
    not below the oldest undo record kept (undo records are kept for a contiguous range
    of heights ending at the head, so one lookup usually settles it)."""
    head = view.head()
    if head is None:
        raise ProofUnavailable("not_found", "the node has no chain yet")
    oldest = max(0, head.height - keep_state + 1)
    if oldest == head.height or view.has_undo_record(oldest + 1):
        return oldest
    first = view.first_undo_height()  # keep_state was raised recently
    return head.height if first is None else max(oldest, first - 1)


def prove_state(store: ChainStore, key: bytes, height: int | None) -> tuple[StateProof, bytes]:
    """The R36 proof of `key` at `height` (None: the head) and header `height`'s state_root.

    Raises `ProofUnavailable` (`not_found` above the head, `pruned` below the oldest kept
    height) and `StorageError` if the stored data disagree with a header: a wrong proof
    is never returned.
    """
    with store.read_view() as view:
        head = view.head()
        if head is None:
            raise ProofUnavailable("not_found", "the node has no chain yet")
        target = head.height if height is None else height
        if target < 0:
            raise ProofUnavailable("not_found", f"height {target} is not a block height")
        if target > head.height:
            raise ProofUnavailable("not_found", f"height {target} is above the head {head.height}")
        if target == head.height:
            return _prove(view, key, view.get(key), target, head.state_root), head.state_root
        oldest = _oldest_provable(view, store.keep_state)
        if target < oldest:
            raise ProofUnavailable(
                "pruned", f"the state at height {target} is no longer kept: the oldest provable height is {oldest}"
            )
        state_root = _state_root_at(view, target)
        with _rebuilds:
            reverse = _values_at(view, target, head.height)
            tree = update_tree(view, reverse)
            if tree.root != state_root:
                raise StorageError(
                    f"the tree rebuilt at height {target} has root {tree.root.hex()}, not the header's {state_root.hex()}"
                )
            value = reverse[key] if key in reverse else view.get(key)
            return _prove(OverlayTreeReader(view, tree), key, value, target, state_root), state_root


def _prove(reader: TreeReader, key: bytes, value: bytes | None, height: int, state_root: bytes) -> StateProof:
    """`prove_key`, checked against the root it must reach (never serve a wrong proof)."""
    try:
        proof = prove_key(reader, key, value, height)
        verify_state_proof(proof, key, height, state_root)
    except (ValueError, InvalidProof) as error:
        raise StorageError(f"the stored state tree cannot prove key {key.hex()} at height {height}: {error}") from None
    return proof


def _state_root_at(view: ReadView, height: int) -> bytes:
    """The state_root of header `height`; for 0, the root genesis gave (no header holds it)."""
    if height == 0:
        root = view.genesis_state_root()
    else:
        header = view.header(height)
        root = None if header is None else header.state_root
    if root is None:
        raise ProofUnavailable("pruned", f"the state root of height {height} is no longer kept")
    return root


def _values_at(view: ReadView, height: int, head_height: int) -> dict[bytes, bytes | None]:
    """Every key blocks height+1 … head changed, with its value at `height` (None: absent),
    leaving out keys whose value at the head is the same again."""
    values: dict[bytes, bytes | None] = {}
    for _, record in view.undo_records(height + 1, head_height):
        for key, before in record:
            values.setdefault(key, before)
    return {key: before for key, before in values.items() if view.get(key) != before}


def change_points(store: ChainStore, after: int, limit: int) -> tuple[list[ChangePoint], int | None]:
    """Up to `limit` change points (R37) at heights above `after`, ascending, and the cursor
    for the next page (the last height listed) or None when there are no more."""
    if after < 0 or limit < 1:
        raise ValueError("after must be ≥ 0 and limit ≥ 1")
    with store.read_view() as view:
        found = view.change_point_sets(after, limit + 1)
        points = []
        for height, next_validators in found[:limit]:
            header = view.header(height)
            commit = view.commit(height)
            if header is None or commit is None:
                raise StorageError(f"change point {height} has no stored block or commit")
            points.append(ChangePoint(height, codec.encode(header.to_map()), commit, next_validators))
    return points, (points[-1].height if len(found) > limit else None)
