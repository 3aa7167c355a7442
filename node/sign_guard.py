"""Double-sign protection: remember every vote and proposal signed, durably, before sending (R27).

A validator never signs two different votes for the same (height, round, type), nor
two different proposals for the same (height, round). Before a signature leaves the
node, the signed message is written to LevelDB with `sync=True`; on a request to sign
a conflicting message, even after a crash and restart, the guard refuses. Signing the
same message again returns the same signature (Ed25519 is deterministic).

Key layout (in the node's LevelDB, docs/storage.md):
    Z ‖ height(8) ‖ round(4) ‖ kind(1: 1 prevote, 2 precommit, 3 proposal) → signed bytes
"""

from __future__ import annotations

import struct

import plyvel

from marketplace_tx.primitives.crypto import KeyPair

SIGNED = b"Z"
KIND_CODES = {"prevote": 1, "precommit": 2, "proposal": 3}
KEEP_HEIGHTS = 1000
"""Records older than this many heights below the newest are pruned."""


class DoubleSignRefused(Exception):
    """Signing this would conflict with a message already signed (R27)."""


class SignGuard:
    """Signs consensus messages for one validator key, never twice differently."""

    def __init__(self, db: plyvel.DB, key: KeyPair) -> None:
        self.db = db
        """The node's LevelDB."""
        self.key = key
        """The validator key."""

    @staticmethod
    def _record_key(height: int, round_number: int, kind: str) -> bytes:
        return SIGNED + struct.pack(">QIB", height, round_number, KIND_CODES[kind])

    def sign(self, height: int, round_number: int, kind: str, message: bytes) -> bytes:
        """Sign `message` (full signing bytes) as the (height, round, kind) message, or refuse."""
        record_key = self._record_key(height, round_number, kind)
        previous = self.db.get(record_key)
        if previous is not None and previous != message:
            raise DoubleSignRefused(f"already signed a different {kind} at height {height} round {round_number}")
        if previous is None:
            self.db.put(record_key, message, sync=True)
        return self.key.sign(message)

    def signed(self, height: int, round_number: int, kind: str) -> bytes | None:
        """The message signed for (height, round, kind), if any."""
        return self.db.get(self._record_key(height, round_number, kind))

    def prune(self, below_height: int) -> None:
        """Forget records of heights below `below_height - KEEP_HEIGHTS`."""
        limit = below_height - KEEP_HEIGHTS
        if limit <= 0:
            return
        with self.db.write_batch() as batch:
            for record_key in self.db.iterator(start=SIGNED, stop=SIGNED + struct.pack(">Q", limit), include_value=False):
                batch.delete(record_key)
