"""The state root: a commitment to the whole application state (PROTOCOL R23).

The project's own choice, written down in docs/state.md:

    state_root(0) = SHA-256(TAG ‖ 0³² ‖ SHA-256(canonical(genesis changes)))
    state_root(H) = SHA-256(TAG ‖ state_root(H−1) ‖ SHA-256(canonical(changes of H)))

where TAG = b"marketchain/state/v1\\x00" and the changes of a block are its *net*
effect on state: every key whose value differs from before the block, as a list of
`[key, value]` pairs sorted by key, `value` nil for a deleted key. Two nodes with the
same root hold the same state (by induction from genesis) and the root costs
O(changes) per block, not O(state).
"""

from __future__ import annotations

import hashlib

from marketplace_tx.primitives import codec

STATE_ROOT_TAG = b"marketchain/state/v1\x00"
"""Domain tag of the state root hash."""

ZERO_ROOT = bytes(32)
"""The root before genesis."""


def changes_digest(changes: dict[bytes, bytes | None]) -> bytes:
    """SHA-256 of the canonical sorted `[key, value]` list of a change set."""
    pairs = [[key, changes[key]] for key in sorted(changes)]
    return hashlib.sha256(codec.encode(pairs)).digest()


def next_state_root(previous_root: bytes, changes: dict[bytes, bytes | None]) -> bytes:
    """The state root after applying `changes` to the state committed by `previous_root`."""
    return hashlib.sha256(STATE_ROOT_TAG + previous_root + changes_digest(changes)).digest()
