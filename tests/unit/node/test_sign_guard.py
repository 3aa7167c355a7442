"""R27: a validator never signs two different votes for one (height, round, type), across restarts."""

from __future__ import annotations

from pathlib import Path

import plyvel
import pytest

from consensus.vote import Vote
from marketplace_tx.primitives.crypto import KeyPair, verify_signature
from node.sign_guard import DoubleSignRefused, SignGuard

KEY = KeyPair.from_seed(bytes(range(32)))


def vote_bytes(block_hash: bytes | None, round_number: int = 0, kind: str = "prevote") -> bytes:
    return Vote("guard-chain", 5, round_number, kind, block_hash).signing_bytes()


def test_same_message_signs_again_conflicting_is_refused_after_restart(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    guard = SignGuard(db, KEY)
    first = guard.sign(5, 0, "prevote", vote_bytes(b"\x01" * 32))
    assert verify_signature(KEY.address, vote_bytes(b"\x01" * 32), first)
    assert guard.sign(5, 0, "prevote", vote_bytes(b"\x01" * 32)) == first
    with pytest.raises(DoubleSignRefused):
        guard.sign(5, 0, "prevote", vote_bytes(None))
    guard.sign(5, 0, "precommit", vote_bytes(None, kind="precommit"))  # another type: allowed
    guard.sign(5, 1, "prevote", vote_bytes(None, 1))  # another round: allowed
    db.close()
    reopened = plyvel.DB(str(tmp_path / "db"))
    guard = SignGuard(reopened, KEY)
    with pytest.raises(DoubleSignRefused):
        guard.sign(5, 0, "prevote", vote_bytes(b"\x02" * 32))
    assert guard.signed(5, 0, "prevote") == vote_bytes(b"\x01" * 32)
    reopened.close()


def test_prune_keeps_recent_heights(tmp_path: Path) -> None:
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    guard = SignGuard(db, KEY)
    guard.sign(3, 0, "prevote", b"old")
    guard.sign(2000, 0, "prevote", b"new")
    guard.prune(2000)
    assert guard.signed(3, 0, "prevote") is None
    assert guard.signed(2000, 0, "prevote") == b"new"
    db.close()
