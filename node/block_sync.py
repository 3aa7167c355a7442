"""Block sync: a node that is behind fetches final blocks with their commits (PROTOCOL R30).

For each missing height the node asks a peer that has it for the block and the
commit that finalized it, checks the commit's signatures against the validator set of
that height (known from the state after the previous block), re-executes the block and
checks every root (`apply_block`), then stores it like any final block. Requests are
pipelined (a window of heights in flight) and retried on another peer on timeout.

Claims are not trusted (issue 13): a peer's claimed height (its `status`, or consensus
messages for later heights) only makes the node *request* blocks, at most `WINDOW`
heights above its own head. `syncing` and `target_height` count a peer's claim only
once that peer has delivered a block at head + 1 whose commit verified and which
applied; a peer that leaves a request unanswered for `REQUEST_TIMEOUT_S` loses
`PENALTY_UNSERVED` and its claim (and must prove itself again). Serving requests:
node/block_serving.py.

Speed: the transaction signatures of a block are verified in worker processes as soon
as it arrives (`node/signature_workers.py`), while the node executes the blocks before
it; `apply_block` then skips the signatures the workers found valid.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from consensus.commit import verify_commit
from marketplace_tx.chain.block import decode_block, decode_commit
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.errors import CodecError, InvalidBlock
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_transition import BlockResult, apply_block
from marketplace_tx.rules.validators import set_at
from node.block_serving import BlockServer
from node.logging_setup import log_fields
from node.peer_actions import PeerActions, Send
from node.signature_workers import SignatureWorkers, verified_hashes
from node.storage import ChainStore

log = logging.getLogger("marketchain.sync")

WINDOW = 16
"""Heights requested at once."""
REQUEST_TIMEOUT_S = 5.0
"""A request unanswered this long is sent to another peer."""
PENALTY_UNSERVED = 5.0
"""Score a peer loses for not answering, in time, a request for a height it claimed."""
PENALTY_UNSOLICITED = 5.0
"""Score a peer loses for a `block_response` this node did not ask it for."""
PENALTY_MALFORMED = 10.0
"""Score a peer loses for a `block_response` that is not `{height, block, commit}`."""
PENALTY_INVALID_BLOCK = 50.0
"""Score a peer loses for a block (or commit) that fails verification or execution."""


class BlockSync:
    """Keeps the node's chain up to the highest height its peers report."""

    def __init__(
        self,
        *,
        store: ChainStore,
        chain_id: str,
        params: Params,
        send: Send,
        peers: PeerActions,
        run_in_order: Callable[[Callable[[], Awaitable[None]]], None],
        on_block: Callable[[BlockResult], None],
        on_head_moved: Callable[[], None],
        signature_known_valid: Callable[[bytes], bool],
        workers: SignatureWorkers | None = None,
    ) -> None:
        self.store = store
        """The chain: tip, state, stored blocks and commits."""
        self.chain_id = chain_id
        """The chain whose commits are verified."""
        self.params = params
        """Genesis parameters (block limits)."""
        self.send = send
        """Send one message to one peer."""
        self.peers = peers
        """Penalize peers that send malformed or invalid blocks (R32)."""
        self.run_in_order = run_in_order
        """Queue a job after the consensus driver's work (`ConsensusDriver.submit`), so that
        blocks are stored by one task at a time."""
        self.on_block = on_block
        """Bookkeeping after a final block is stored (the node's `after_block`)."""
        self.on_head_moved = on_head_moved
        """Blocks were stored: consensus restarts at the new height (`ConsensusDriver.resync`)."""
        self.signature_known_valid = signature_known_valid
        """Whether a transaction's signature was already verified (the mempool's cache)."""
        self.workers = workers if workers is not None else SignatureWorkers(0)
        """Worker processes verifying the signatures of fetched blocks ahead of their turn."""
        self._verifying: dict[int, asyncio.Future[list[bytes]]] = {}
        self.peer_heights: dict[bytes, int] = {}
        """Highest height each peer claimed (trusted only for peers in `backed`)."""
        self.backed: set[bytes] = set()
        """Peers that delivered a block whose commit verified since their last failure."""
        self.server = BlockServer(store, peers)
        """Answers peers' `block_request`s (node/block_serving.py)."""
        self._requested: dict[int, tuple[bytes, float]] = {}
        self._asked_before: dict[int, set[bytes]] = {}
        self._received: dict[int, tuple[bytes, bytes, bytes]] = {}
        self._started_at: float | None = None
        self._start_height = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    @property
    def target_height(self) -> int:
        """The highest height claimed by a peer that has delivered a verified block
        (this node's head if none did): an unproven claim moves nothing."""
        backed = (height for peer, height in self.peer_heights.items() if peer in self.backed)
        return max(backed, default=self.store.head().height)

    @property
    def syncing(self) -> bool:
        """True while the node is more than one block behind a peer that proved its claim."""
        return self.target_height > self.store.head().height + 1

    def progress(self) -> dict[str, Any]:
        """Heights done and to go, for `/status` and logs."""
        head = self.store.head().height
        return {"height": head, "target": self.target_height, "syncing": self.syncing}

    def peer_height(self, peer: bytes, height: int) -> None:
        """A peer says it has blocks up to `height`."""
        if height > self.peer_heights.get(peer, 0):
            self.peer_heights[peer] = height
        self.request_missing()

    def peer_gone(self, peer: bytes) -> None:
        """Forget a disconnected peer and re-route its requests."""
        self._drop_claim(peer)
        self.server.forget(peer)
        for height, (asked, _) in list(self._requested.items()):
            if asked == peer:
                del self._requested[height]
        self.request_missing()

    def stop(self) -> None:
        """Cancel the retry timer (the node is stopping)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._verifying.values():
            future.cancel()
        self._verifying.clear()

    def request_missing(self) -> None:
        """Ask for the next missing heights from peers that have them."""
        if self._stopped:
            return
        head = self.store.head().height
        for height in [h for h in self._requested if h <= head]:  # decided meanwhile by consensus
            del self._requested[height]
        for height in [h for h in self._received if h <= head]:
            del self._received[height]
        for height in [h for h in self._asked_before if h <= head]:
            del self._asked_before[height]
        for height in [h for h in self._verifying if h <= head]:
            self._verifying.pop(height).cancel()
        now = time.monotonic()
        claimed = max(self.peer_heights.values(), default=0)  # unproven claims: asked, capped
        for height in [h for h in self._requested if h > claimed]:  # no one claims it any more
            del self._requested[height]  # (a late answer is still taken: `_asked_before`)
        for height in range(head + 1, min(head + WINDOW, claimed) + 1):
            if height in self._received:
                continue
            asked = self._requested.get(height)
            if asked is not None and now - asked[1] < REQUEST_TIMEOUT_S:
                continue
            if asked is not None:  # unanswered: the peer's claimed height is not trusted any more
                self._unserved(asked[0], height)
            candidates = [peer for peer, top in self.peer_heights.items() if top >= height and (asked is None or peer != asked[0])]
            if not candidates and asked is not None:
                candidates = [asked[0]]
            if not candidates:
                continue
            peer = candidates[height % len(candidates)]
            if self.send(peer, "block_request", {"height": height}):
                self._requested[height] = (peer, now)
                self._asked_before.setdefault(height, set()).add(peer)
                if self._started_at is None:
                    self._started_at, self._start_height = now, head
        if self._requested and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT_S, self._retry)

    def _unserved(self, peer: bytes, height: int) -> None:
        """`peer` claimed `height` but did not send it in time: charge it, drop its claim."""
        if self._drop_claim(peer):
            self.peers.penalize(peer, PENALTY_UNSERVED, f"block {height} it claimed not served in time")

    def _drop_claim(self, peer: bytes) -> bool:
        """Forget `peer`'s claimed height and its backing; True if it had claimed one."""
        self.backed.discard(peer)
        return self.peer_heights.pop(peer, None) is not None

    def _disarm_if_idle(self) -> None:
        """No request outstanding: no timer either (an idle node does no work, R29)."""
        if not self._requested and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _retry(self) -> None:
        """The retry timer: re-route requests that were not answered in time."""
        self._timer = None
        self.request_missing()

    def serve(self, peer: bytes, body: Any) -> None:
        """Answer a peer's `block_request`, streamed from storage (node/block_serving.py)."""
        self.server.serve(peer, body)

    def receive(self, peer: bytes, body: Any) -> None:
        """A `block_response`: keep it, then apply every consecutive block."""
        if not isinstance(body, dict) or not isinstance(body.get("height"), int) or isinstance(body.get("height"), bool):
            self.peers.penalize(peer, PENALTY_MALFORMED, "block_response malformed")
            return
        height = body["height"]
        if not isinstance(body.get("block"), bytes) or not isinstance(body.get("commit"), bytes):
            self.peers.penalize(peer, PENALTY_MALFORMED, "block_response malformed")
            return
        if len(body["block"]) > self.params.max_block_bytes:  # cheap, before it is kept
            self.peers.penalize(peer, PENALTY_MALFORMED, "block_response larger than max_block_bytes")
            return
        asked = self._requested.get(height)
        if height <= self.store.head().height:
            self._requested.pop(height, None)  # consensus decided it first
            self._disarm_if_idle()
            return
        if height in self._received:
            return
        late = peer in self._asked_before.get(height, ())  # asked earlier, then re-routed: still useful
        if (asked is None or asked[0] != peer) and not late:
            self.peers.penalize(peer, PENALTY_UNSOLICITED, "unsolicited block_response")
            return
        self._received[height] = (peer, body["block"], body["commit"])
        self._requested.pop(height, None)
        # A real catch-up, not a block or two: the sender's own claim is enough to choose a
        # worker (a claim only decides where its blocks' signatures are checked, not whether).
        ahead = max(self.target_height, self.peer_heights.get(peer, 0)) - self.store.head().height
        if ahead >= WINDOW:
            future = self.workers.verify_block(body["block"], self.params)
            if future is not None:
                self._verifying[height] = future
        self._disarm_if_idle()
        self.run_in_order(self._apply_ready)

    async def _apply_ready(self) -> None:
        store = self.store
        applied = 0
        while True:
            tip = store.head()
            entry = self._received.pop(tip.height + 1, None)
            if entry is None:
                break
            peer, raw_block, raw_commit = entry
            verified = await verified_hashes(self._verifying.pop(tip.height + 1, None))
            known_valid = self.signature_known_valid
            if verified:
                def known_valid(tx_hash: bytes, verified: frozenset[bytes] = verified) -> bool:
                    return tx_hash in verified or self.signature_known_valid(tx_hash)
            try:
                block = decode_block(raw_block, self.params.max_block_bytes)
                commit = decode_commit(raw_commit)
                if commit.block_hash != block.hash or commit.height != block.header.height:
                    raise InvalidBlock("the commit is not for this block")
                validators = set_at(State(store), block.header.height)
                verify_commit(commit, self.chain_id, block.hash, block.header.height, validators)
                result = await asyncio.to_thread(
                    apply_block, store, tip, self.chain_id, self.params, block, known_valid,
                )
            except (InvalidBlock, CodecError) as error:
                log.warning("block %d from %s rejected: %s", tip.height + 1, peer.hex()[:12], error,
                            extra=log_fields(event="sync_block_rejected", height=tip.height + 1, peer=peer.hex(),
                                             error=str(error)))
                self.peers.penalize(peer, PENALTY_INVALID_BLOCK, f"sync block invalid: {error}")
                self._drop_claim(peer)
                break
            await asyncio.to_thread(store.commit_block, result, commit)
            self.backed.add(peer)  # its commit verified: its claimed height now counts
            self.on_block(result)
            applied += 1
        if applied:
            head = store.head().height
            if self._started_at is not None:
                rate = (head - self._start_height) / max(time.monotonic() - self._started_at, 1e-6)
                log.info("synced to %d of %d (%.1f blocks/s)", head, self.target_height, rate,
                         extra=log_fields(event="sync_progress", height=head, target_height=self.target_height,
                                          blocks_per_second=round(rate, 1)))
            if not self.syncing:
                self._started_at = None
            self.on_head_moved()
        self.request_missing()
