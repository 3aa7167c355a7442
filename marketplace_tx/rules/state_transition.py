"""The state transition: build a block from candidates, or validate and apply a block.

In the manner of the Ethereum execution specs' `state_transition`: `apply_block`
checks the header against its parent, executes the body, recomputes every root and
raises `InvalidBlock` on any mismatch (R11, R23, R24). `build_block` is the proposer's
side of the same computation. Neither writes anything: both return the block's net
state changes for storage to commit atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from marketplace_tx.chain.block import Block, Commit, Header, last_commit_hash
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import AdmissionError, InvalidBlock
from marketplace_tx.primitives.merkle import merkle_root
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.deadlines import fire_deadlines
from marketplace_tx.rules.evidence import apply_evidence
from marketplace_tx.rules.execution import execute_transaction, try_execute_transaction
from marketplace_tx.rules.genesis_state import apply_genesis
from marketplace_tx.rules.state import MemoryStateReader, State, StateReader
from marketplace_tx.rules.state_tree import TreeUpdate, update_tree
from marketplace_tx.rules.validators import apply_scheduled, load_validators, validators_hash
from marketplace_tx.speedups import valid_signatures


def _array_header_bytes(count: int) -> int:
    """Bytes of the msgpack array header of `count` items."""
    return 1 if count < 16 else 3 if count < 65536 else 5


def _bin_header_bytes(length: int) -> int:
    """Bytes of the msgpack `bin` header in front of `length` bytes."""
    return 2 if length < 256 else 3 if length < 65536 else 5


def _envelope_bytes(
    chain_id: str, height: int, time: int, last_commit: Commit | None, evidence: tuple[dict, ...] = ()
) -> int:
    """Exact size of a block at (height, time) with this last commit and no transactions.

    Every hash field has a fixed 32-byte size, so zeros stand in for the real roots.
    """
    zero = bytes(32)
    header = Header(chain_id, height, time, zero, zero, zero, zero, zero, zero, zero, zero, zero)
    return len(Block(header, (), last_commit, tuple(evidence)).encode())


@dataclass(frozen=True)
class ChainTip:
    """What the next block needs to know about the last final block (or genesis)."""

    height: int
    """The tip's height; 0 for genesis."""
    block_hash: bytes
    """The tip's block hash; the genesis hash at height 0."""
    time: int
    """The tip's block time (genesis_time at height 0)."""
    state_root: bytes
    """The state root after the tip."""


@dataclass(frozen=True)
class BlockResult:
    """A block together with what executing it produced."""

    block: Block
    """The block."""
    transactions: tuple[Transaction, ...]
    """Its decoded transactions, in order."""
    receipts: tuple[Receipt, ...]
    """One receipt per transaction."""
    changes: dict[bytes, bytes | None]
    """Its net state changes, to be written with it atomically."""
    block_events: tuple[dict, ...] = ()
    """Events of the work done before the transactions (deadlines, R15)."""
    tree: TreeUpdate | None = None
    """The state tree's writes for `changes` (R35); `tree.root` is the header's `state_root`.
    Always set by `build_block` and `apply_block`."""


def genesis_changes(genesis: Genesis) -> tuple[ChainTip, dict[bytes, bytes | None]]:
    """The state genesis creates and the tip at height 0 (R33, docs/state.md)."""
    state = State(MemoryStateReader())
    apply_genesis(state, genesis)
    changes = state.changes()
    root = update_tree(MemoryStateReader(), changes).root
    return ChainTip(0, genesis.hash, genesis.genesis_time, root), changes


_OK_LEAF = codec.encode({"ok": True})
"""The canonical committed form of every successful receipt (R11), encoded once."""


def _results_root(receipts: Iterable[Receipt]) -> bytes:
    return merkle_root([_OK_LEAF if receipt.ok else codec.encode(receipt.committed_form()) for receipt in receipts])


def _evidence_root(evidence: Iterable[dict]) -> bytes:
    return merkle_root([codec.encode(item) for item in evidence])


def begin_block(state: State, context: BlockContext, evidence: tuple[dict, ...] = ()) -> list[dict]:
    """Work the chain does at the start of every block, before its transactions (R27 v2):
    the validator set decided to sign the next block comes into force (R34, R35: after
    block h, `v` is the set that signs h+1), evidence is applied (R27), and due order
    deadlines fire (R15). Returns the events it produced."""
    events: list[dict] = []
    new_set = apply_scheduled(state, context.height + 1)
    if new_set is not None:
        events.append({"type": "validator_set", "validators": list(new_set), "height": context.height + 1})
    events += apply_evidence(state, context, evidence)
    events += fire_deadlines(state, context)
    return events


def build_block(
    base: StateReader,
    tip: ChainTip,
    chain_id: str,
    params: Params,
    proposer: bytes,
    time: int,
    candidates: Iterable[Transaction],
    last_commit: Commit | None,
    evidence: tuple[dict, ...] = (),
    max_transactions: int | None = None,
) -> BlockResult:
    """Assemble the next block from `candidates` (already admitted, in priority order)
    and `evidence` (already checked: invalid evidence raises `InvalidBlock`).

    Candidates that cannot be included at their turn (R11: wrong nonce, fee not
    payable) are skipped, and so are those that would take the block past
    `max_block_bytes` (computed exactly); the block stops at `max_block_txs`, or at
    `max_transactions` if that is lower (the proposer's own time budget: a smaller
    block is as valid as a full one).
    """
    state = State(base)
    context = BlockContext(chain_id, tip.height + 1, time, proposer, params)
    validators = load_validators(state)  # the set that signs this block (R35: `v` after the parent)
    block_events = begin_block(state, context, evidence)
    included: list[Transaction] = []
    receipts: list[Receipt] = []
    size = _envelope_bytes(chain_id, context.height, time, last_commit, evidence)
    limit = params.max_block_txs if max_transactions is None else max(0, min(max_transactions, params.max_block_txs))
    for tx in candidates:
        if len(included) >= limit:
            break
        count = len(included)
        cost = len(tx.raw) + _bin_header_bytes(len(tx.raw))
        cost += _array_header_bytes(count + 1) - _array_header_bytes(count)
        if size + cost > params.max_block_bytes:
            continue
        receipt = try_execute_transaction(state, context, tx, len(included))
        if receipt is None:
            continue
        size += cost
        receipts.append(receipt)
        included.append(tx)
    changes = state.changes()
    tree = update_tree(base, changes)
    header = Header(
        chain_id=chain_id,
        height=context.height,
        time=time,
        prev_hash=tip.block_hash,
        tx_root=merkle_root([tx.hash for tx in included]),
        results_root=_results_root(receipts),
        state_root=tree.root,
        validators_hash=validators_hash(validators),
        next_validators_hash=validators_hash(load_validators(state)),
        proposer=proposer,
        last_commit_hash=last_commit_hash(last_commit),
        evidence_hash=_evidence_root(evidence),
    )
    block = Block(header, tuple(tx.raw for tx in included), last_commit, tuple(evidence))
    return BlockResult(block, tuple(included), tuple(receipts), changes, tuple(block_events), tree)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidBlock(message)


def _checked_transactions(
    raws: Sequence[bytes], chain_id: str, params: Params, signature_known_valid: Callable[[bytes], bool]
) -> list[Transaction]:
    """`check_stateless` of every transaction of a block, with the signatures not already
    known valid, or `InvalidBlock` naming the first transaction that fails (R10, R11).

    Speed: the signatures are verified together (`valid_signatures`, on every core)
    after the other checks; the first failure in block order is still the one reported,
    with the same message as checking each transaction in turn.
    """
    checked: list[tuple[Transaction, bool]] = []
    failure: tuple[int, AdmissionError] | None = None
    for index, raw in enumerate(raws):
        try:
            tx = check_stateless(raw, chain_id, params, verify_signature=False)
        except AdmissionError as error:
            failure = (index, error)
            break
        checked.append((tx, not signature_known_valid(tx.hash)))
    verdicts = iter(valid_signatures([tx for tx, verify in checked if verify]))
    for index, (_, verify) in enumerate(checked):
        if verify and not next(verdicts):
            failure = (index, AdmissionError("bad_signature", "sig: not a valid signature of the sender"))
            break
    if failure is not None:
        index, error = failure
        raise InvalidBlock(f"transaction {index}: {error.code}: {error.message}")
    return [tx for tx, _ in checked]


def apply_block(
    base: StateReader,
    tip: ChainTip,
    chain_id: str,
    params: Params,
    block: Block,
    signature_known_valid: Callable[[bytes], bool] = lambda tx_hash: False,
) -> BlockResult:
    """Validate `block` as the child of `tip` and execute it, or raise `InvalidBlock`.

    Checks header fields against the parent (R23, R28), structure and limits, each
    transaction's stateless validity (R10, R11), then executes and compares every
    root. Commit signatures are the consensus layer's job (R24, R30).
    `signature_known_valid(tx_hash)` lets a caller skip signatures it already checked.
    """
    header = block.header
    _check(header.chain_id == chain_id, "header.chain_id is not this chain")
    _check(header.height == tip.height + 1, f"header.height must be {tip.height + 1}")
    _check(header.time > tip.time, "header.time must be after the parent's time (R28)")
    _check(header.prev_hash == tip.block_hash, "header.prev_hash is not the parent's hash")
    _check(len(block.txs) <= params.max_block_txs, "block holds more than max_block_txs")
    _check(len(block.encode()) <= params.max_block_bytes, "block exceeds max_block_bytes")
    if tip.height == 0:
        _check(block.last_commit is None, "block 1 carries an empty last_commit")
    else:
        _check(block.last_commit is not None, "last_commit is missing")
        assert block.last_commit is not None
        _check(block.last_commit.height == tip.height, "last_commit.height is not the parent's")
        _check(block.last_commit.block_hash == tip.block_hash, "last_commit is not for the parent")
    _check(header.last_commit_hash == last_commit_hash(block.last_commit), "last_commit_hash mismatch")
    _check(header.evidence_hash == _evidence_root(block.evidence), "evidence_hash mismatch")
    state = State(base)
    context = BlockContext(chain_id, header.height, header.time, header.proposer, params)
    validators = load_validators(state)  # the set that signs this block (R35: `v` after the parent)
    block_events = begin_block(state, context, block.evidence)
    _check(header.validators_hash == validators_hash(validators), "validators_hash mismatch")
    _check(header.proposer in validators, "header.proposer is not a validator")
    transactions = _checked_transactions(block.txs, chain_id, params, signature_known_valid)
    receipts = [execute_transaction(state, context, tx, index) for index, tx in enumerate(transactions)]
    changes = state.changes()
    _check(header.tx_root == merkle_root([tx.hash for tx in transactions]), "tx_root mismatch")
    _check(header.results_root == _results_root(receipts), "results_root mismatch")
    tree = update_tree(base, changes)
    _check(header.state_root == tree.root, "state_root mismatch")
    _check(header.next_validators_hash == validators_hash(load_validators(state)), "next_validators_hash mismatch")
    return BlockResult(block, tuple(transactions), tuple(receipts), changes, tuple(block_events), tree)
