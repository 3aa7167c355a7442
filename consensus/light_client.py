"""The light client (PROTOCOL R37): a header verified from the genesis file alone.

Pure: no I/O. Shared by the client (`client/light_client.py`: `verify account`, the
SDK) and the node (state sync checks a snapshot's header with it, R39). The caller
fetches the change points (`GET /light/changes`, or P2P `light_changes`), the target
header and its commit, and hands them here; nothing the node says is believed until it
checks out. Trusted is the genesis document only: its `chain_id` and its validators.

    S = the genesis validators
    for each change point strictly below the target, in strictly increasing height:
        chain_id = genesis chain_id, height = the listed one, validators_hash = hash(S),
        more than 2/3 of S (each counted once) precommitted its block hash (R26),
        hash(the given next set) = its next_validators_hash;   then S := the next set
    target header: genesis chain_id, the requested height, validators_hash = hash(S),
        a commit by more than 2/3 of S

A change point omitted by the node shows as a `validators_hash` that is not hash(S) at
the next change point or at the target; one signed by a set that was never trusted
fails its commit. Cost: one commit per validator-set change, not per block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from consensus.commit import verify_commit
from marketplace_tx.chain.block import Commit, Header
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError, InvalidBlock
from marketplace_tx.rules.validators import validators_hash

MAX_HEADER_BYTES = 4096
"""A canonical header is about 450 bytes; anything longer than this is refused before decoding."""

MAX_VALIDATORS = 10_000
"""The most addresses a change point's `next_validators` may list (a bound on a hostile node's answer)."""


class LightClientError(Exception):
    """A header, commit or change point that does not verify by R37; the message names the step."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"R37, {step}: {message}")
        self.step = step
        """Where it failed: `change point at height H`, `target header at height H`, or `change points`."""
        self.message = message
        """What did not hold."""


@dataclass(frozen=True)
class TrustedSet:
    """The validator set the light client trusts so far, and the first height it may sign."""

    validators: tuple[bytes, ...]
    """S of R37: the set that signs blocks from `first_height` until the next change point."""
    first_height: int
    """1 for the genesis set; change point height + 1 after a change."""


@dataclass(frozen=True)
class VerifiedHeader:
    """A header that verified by R37 from the genesis file: its `state_root` may be trusted (R36)."""

    height: int
    """The header's height."""
    block_hash: bytes
    """SHA-256 of the canonical header bytes."""
    header: Header
    """The decoded header."""
    signers: tuple[bytes, ...]
    """The validators whose precommits were checked, sorted."""
    validators: tuple[bytes, ...]
    """The set they were checked against (the trusted S), sorted."""


def genesis_set(genesis: Genesis) -> TrustedSet:
    """S at the start: the genesis validators, signing from block 1."""
    return TrustedSet(tuple(sorted(genesis.validators)), 1)


def decode_header(header_bytes: bytes, step: str) -> Header:
    """The header of canonical `header_bytes` (R2, R23); `LightClientError` for anything else."""
    if not isinstance(header_bytes, bytes) or len(header_bytes) > MAX_HEADER_BYTES:
        raise LightClientError(step, f"the header is not bytes of at most {MAX_HEADER_BYTES}")
    try:
        return Header.from_map(codec.decode(header_bytes))
    except CodecError as error:
        raise LightClientError(step, f"the header is not canonical msgpack: {error.message}") from None
    except InvalidBlock as error:
        raise LightClientError(step, f"the header is malformed: {error.message}") from None


def _check_signed(trusted: TrustedSet, chain_id: str, header_bytes: bytes, commit: Commit, height: int,
                  step: str) -> VerifiedHeader:
    """The checks a change point and the target share: chain, height, validators_hash = hash(S), commit."""
    header = decode_header(header_bytes, step)
    if header.chain_id != chain_id:
        raise LightClientError(step, f"the header is of chain {header.chain_id!r}, the genesis of {chain_id!r}")
    if header.height != height:
        raise LightClientError(step, f"the header is of height {header.height}, not {height}")
    if header.validators_hash != validators_hash(trusted.validators):
        raise LightClientError(step, "validators_hash is not the hash of the trusted set (the node skipped a "
                                     "change point, or the header was not signed by the chain's validators)")
    block_hash = hashlib.sha256(header_bytes).digest()
    try:
        verify_commit(commit, chain_id, block_hash, height, trusted.validators)
    except InvalidBlock as error:
        raise LightClientError(step, f"the commit does not verify against the trusted set of "
                                     f"{len(trusted.validators)}: {error.message}") from None
    return VerifiedHeader(height, block_hash, header, tuple(entry.validator for entry in commit.signatures),
                          trusted.validators)


def advance(trusted: TrustedSet, chain_id: str, change: ChangePoint) -> TrustedSet:
    """S after one change point, checked (R37); heights must come strictly increasing."""
    step = f"change point at height {change.height}"
    if change.height < trusted.first_height:
        raise LightClientError(step, f"change points must come in strictly increasing height; the previous one "
                                     f"was at {trusted.first_height - 1}")
    verified = _check_signed(trusted, chain_id, change.header, change.commit, change.height, step)
    if verified.header.next_validators_hash == verified.header.validators_hash:
        raise LightClientError(step, "the header is not a change point (next_validators_hash = validators_hash)")
    next_set = change.next_validators
    if not next_set or list(next_set) != sorted(set(next_set)) or any(len(item) != 32 for item in next_set):
        raise LightClientError(step, "next_validators must be a non-empty sorted list of unique 32-byte addresses")
    if validators_hash(next_set) != verified.header.next_validators_hash:
        raise LightClientError(step, "the given next set does not hash to the header's next_validators_hash")
    return TrustedSet(next_set, change.height + 1)


def verify_target(trusted: TrustedSet, chain_id: str, header_bytes: bytes, commit: Commit,
                  height: int) -> VerifiedHeader:
    """The target header at `height`, signed by the trusted set S (R37)."""
    step = f"target header at height {height}"
    if height < trusted.first_height:
        raise LightClientError(step, f"the trusted set signs from height {trusted.first_height} only")
    return _check_signed(trusted, chain_id, header_bytes, commit, height, step)


def relevant_changes(changes: Iterable[ChangePoint], height: int) -> list[ChangePoint]:
    """The change points strictly below `height`; those at or above it are not needed and ignored."""
    return [change for change in changes if change.height < height]


def verify_header(genesis: Genesis, changes: Sequence[ChangePoint], header_bytes: bytes,
                  commit: Commit, height: int | None = None) -> VerifiedHeader:
    """Verify the header of `header_bytes` by R37 from `genesis` through `changes`.

    Change points at or above the target height are ignored, the others must be strictly
    increasing. `height` is
    the height the caller asked for (default: the header's own, once decoded).
    Raises `LightClientError` naming the failed step.
    """
    if height is None:
        height = decode_header(header_bytes, "target header").height
    relevant = relevant_changes(changes, height)
    for before, after in zip(relevant, relevant[1:], strict=False):
        if after.height <= before.height:
            raise LightClientError("change points", f"change points must come in strictly increasing height, "
                                                    f"each once: {after.height} follows {before.height}")
    trusted = genesis_set(genesis)
    for change in relevant:
        trusted = advance(trusted, genesis.chain_id, change)
    return verify_target(trusted, genesis.chain_id, header_bytes, commit, height)
