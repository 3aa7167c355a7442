"""Proposals: what the proposer of a round offers, and its signing bytes (PROTOCOL R25, R26)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.crypto import KeyPair, signing_bytes, verify_signature

NO_POL_ROUND = -1
"""`pol_round` of a proposal that carries no proof of lock: a fresh value (R26)."""


@dataclass(frozen=True)
class Proposal:
    """The proposer's offer of `block_hash` at (height, round) (R26).

    The signer is implied: only `proposer_for(validators, height, round)` may sign it
    (R25), so the signed map names no proposer.
    """

    chain_id: str
    """The chain's id."""
    height: int
    """The height proposed for."""
    round: int
    """The round proposed in."""
    pol_round: int
    """The round of the prevote quorum (proof of lock) that justifies a re-proposal,
    or −1 (`NO_POL_ROUND`) for a fresh value; a signed integer (R26)."""
    block_hash: bytes
    """The proposed block's hash (R23)."""

    def to_map(self) -> dict[str, Any]:
        """The signed map `{block_hash, chain_id, height, pol_round, round}` (R26)."""
        return {
            "block_hash": self.block_hash,
            "chain_id": self.chain_id,
            "height": self.height,
            "pol_round": self.pol_round,
            "round": self.round,
        }

    def signing_bytes(self) -> bytes:
        """Domain tag `proposal` + canonical map (R4, R26)."""
        return signing_bytes("proposal", self.to_map())

    def sign(self, key: KeyPair) -> bytes:
        """The proposer's signature of this proposal."""
        return key.sign(self.signing_bytes())

    def verify(self, proposer: bytes, signature: bytes) -> bool:
        """True iff `signature` is `proposer`'s signature of this proposal."""
        return verify_signature(proposer, self.signing_bytes(), signature)
