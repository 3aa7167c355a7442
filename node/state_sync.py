"""Joining a chain by state sync: find, verify and restore a snapshot (PROTOCOL R37, R39).

`StateSync.run` runs on the node's event loop before block sync and consensus start
(node/node.py), while the store's head is genesis (or a restore was interrupted):

1. **discover**: `snapshots_request` to every peer (and to each that connects); offers
   are collected for `discovery_time_s`, longer while none is usable, up to
   `discovery_timeout_s` (then: an error in the log, and block sync from genesis);
2. **choose** (node/snapshot_choice.py): the newest height offered by ≥ 2 peers, else the
   newest; its header and commit (`header_request`) and the change points below it
   (`light_changes_request`, paged, at most `MAX_CHANGE_POINTS`) from an offering peer
   are verified by the light client from this node's genesis (R37), off the loop; a
   header or change points that do not verify cost that peer `PENALTY_BAD_HEADER` and it
   is not asked for that snapshot again;
3. **manifest**: asked of every peer offering it; one whose `state_root` is not the
   verified header's or that does not fold to it costs `PENALTY_BAD_MANIFEST`; the bytes
   served identically by the most peers win, and chunks are fetched from those peers;
4. **chunks** (node/chunk_fetcher.py): `chunk_fetchers` requests in flight; a silent
   peer costs `PENALTY_SILENT` and the chunk is asked elsewhere; each chunk is checked
   against the manifest off the loop before it is written (R39); a bad one costs its
   sender `PENALTY_BAD_CHUNK` (it served that manifest itself), which is never asked
   again; bad chunks from two peers drop the manifest (its servers are charged) and the
   choice starts again;
5. **write** through `StateRestore` (node/state_restore.py): `begin`, one atomic batch
   per chunk, `finish`. A restore found interrupted at start is resumed (only its
   missing chunks) if a peer still serves the exact same manifest bytes within
   `discovery_timeout_s`, else a new snapshot is begun (which wipes the partial one).

Every answer is matched to a request this node sent to that peer; anything else costs
`PENALTY_UNSOLICITED` (R32). Work a peer causes is charged before it is done: chunk
checks run one at a time, and received chunks wait within a byte budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshot_tree import ChunkTree, check_chunk_tree
from marketplace_tx.rules.snapshots import (
    MAX_CHUNK_BYTES,
    InvalidSnapshot,
    Manifest,
    manifest_from_map,
)
from node.chunk_fetcher import ChunkFetcher
from node.config import StatesyncConfig
from node.logging_setup import log_fields
from node.peer_actions import PeerActions, Send
from node.snapshot_choice import MalformedOffer, ManifestVotes, OfferBook, SnapshotKey, parse_offers
from node.state_sync_answers import (
    MalformedAnswer,
    parse_chunk_answer,
    parse_header_answer,
    parse_manifest_answer,
)
from node.state_sync_header import Verified, manifest_problem, verify_from
from node.state_sync_metrics import StateSyncMetrics
from node.state_sync_requests import Requests

log = logging.getLogger("marketchain.statesync")

HEADER_PEERS_TRIED = 3
"""Offering peers asked, one after the other, for a candidate's header before it is given up."""
PENALTY_BAD_HEADER = 20.0
"""A snapshot offered at a height whose header (or the change points below it) does not verify
(R37), or above the head the peer itself announced (a height not final anywhere)."""
PENALTY_BAD_MANIFEST = 50.0
"""A manifest that is not for the verified header or does not fold to its state_root (R39); also
each server of a manifest dropped because chunks from two peers failed against it."""
PENALTY_BAD_CHUNK = 50.0
"""A chunk that fails against the manifest its sender served itself (R39)."""
PENALTY_SILENT = 5.0
"""A request (header, change points, manifest, chunk) unanswered within `chunk_request_timeout_s`."""
PENALTY_UNSOLICITED = 5.0
"""An answer to a request this node did not send to that peer (R32)."""
PENALTY_MALFORMED = 10.0
"""An answer of the wrong shape."""
WAKE_INTERVAL_S = 1.0
"""The loop re-checks deadlines at least this often."""


class Restorer(Protocol):
    """What state sync writes through: node/state_restore.py's `StateRestore`."""

    def pending(self) -> Any:
        """The interrupted restore's `RestoreProgress` (manifest, header, commit, change_points, done), or None."""

    def begin(self, manifest: Manifest, header: bytes, commit: bytes, change_points: Sequence[ChangePoint]) -> None:
        """Wipe any partial restore and the genesis state, then record what is restored."""

    def write_chunk(self, index: int, tree: ChunkTree) -> None:
        """Store one verified chunk in one atomic batch."""

    def finish(self) -> Any:
        """Store the tree above the chunks, the header and the head at H; returns the `ChainTip`."""

    def abandon(self, genesis: Genesis) -> Any:
        """Wipe the partial restore and write `genesis`'s state back."""


class ManifestDropped(Exception):
    """Chunks from two different peers failed against the manifest (R39)."""


class StateSync:
    """Finds, verifies and restores a snapshot, then tells the node where block sync starts."""

    def __init__(self, *, genesis: Genesis, config: StatesyncConfig, restore: Restorer, send: Send,
                 peers: PeerActions, connected: Callable[[], list[bytes]], registry: Any = None,
                 clock: Callable[[], float] = time.monotonic, expected_peers: int = 0) -> None:
        self.genesis = genesis
        """The chain's genesis: the light client's only trust (R37)."""
        self.config = config
        """`[statesync]`: discovery times, chunk timeout and fetchers."""
        self.restore = restore
        """Where verified chunks are written (node/state_restore.py)."""
        self.send = send
        """Send one message to one peer."""
        self.peers = peers
        """Penalize peers (R32)."""
        self.connected = connected
        """The node addresses of the connected peers."""
        self.expected_peers = expected_peers
        """Peers this node is configured to keep (`persistent_peers`): once that many have
        answered `snapshots_request` with a usable offer, discovery ends before
        `discovery_time_s` (nothing more is coming that waiting would bring)."""
        self.clock = clock
        """Monotonic seconds."""
        self.metrics = StateSyncMetrics(registry)
        """`marketchain_statesync_*` (node/state_sync_metrics.py)."""
        self.book = OfferBook()
        """What each peer offers."""
        self.claimed_height: Callable[[bytes], int | None] = lambda peer: None
        """The head height a peer announced (`status`), if heard: it offers no snapshot above it
        (node/state_sync_mode.py sets it)."""
        self.phase = "discovering"
        """discovering, verifying, fetching, finishing, done, or failed (for `/status`)."""
        self.height: int | None = None
        """The snapshot height being restored, once chosen."""
        self.chunks_done = 0
        """Chunks written so far."""
        self.chunks_total = 0
        """Chunks of the manifest being restored (0 until one is chosen)."""
        self._offers_asked: set[bytes] = set()
        self._offers_answered: set[bytes] = set()
        self._heads_unknown: set[bytes] = set()
        """Peers whose offers came before their announced head: checked once it is heard."""
        self.requests = Requests(send, config.chunk_request_timeout_s, self._silent)
        """Requests sent and the answers they wait for (node/state_sync_requests.py)."""
        self._fetch: tuple[SnapshotKey, ChunkFetcher] | None = None
        self._wake = asyncio.Event()
        self._manifest_failed = False
        self._thread: asyncio.Future[Any] | None = None
        self._started = clock()

    # --- reports ----------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """`{"syncing": "state", "phase", "height", "chunks": "k/n", …}` for `/status` and the log."""
        return {"syncing": "state", "phase": self.phase, "height": self.height,
                "chunks": f"{self.chunks_done}/{self.chunks_total}", "chunks_done": self.chunks_done,
                "chunks_total": self.chunks_total, "offering_peers": len(self.book)}

    # --- peers ------------------------------------------------------------------------

    def peer_connected(self, peer: bytes) -> None:
        """Ask a new peer which snapshots it offers (while choosing)."""
        if self.phase in ("discovering", "verifying", "fetching") and peer not in self._offers_asked:
            if self.send(peer, "snapshots_request", {}):
                self._offers_asked.add(peer)

    def peer_gone(self, peer: bytes) -> None:
        """A peer disconnected: its offers are gone, its chunk requests re-routed."""
        self.book.forget_peer(peer)
        self._heads_unknown.discard(peer)
        self._offers_asked.discard(peer)
        self._offers_answered.discard(peer)
        self.requests.peer_gone(peer)
        if self._fetch is not None:
            self._fetch[1].peer_gone(peer)
        self._wake.set()

    # --- answers ----------------------------------------------------------------------

    def receive(self, peer: bytes, kind: str, body: Any) -> None:
        """An answer from a peer: matched to the request it answers, else charged (R32)."""
        try:
            if kind == "snapshots":
                self._receive_offers(peer, body)
            elif kind == "header":
                self._resolve(peer, kind, parse_header_answer(body).height, body)
            elif kind == "light_changes":  # the answer does not name its `after`: the waiting one
                self._resolve(peer, kind, self.requests.waiting_key(peer, kind), body)
            elif kind == "manifest":
                answer = parse_manifest_answer(body)
                self._resolve(peer, kind, (answer.height, answer.chunk_depth), answer)
            elif kind == "chunk":
                self._receive_chunk(peer, body)
        except (MalformedAnswer, MalformedOffer) as error:
            self.peers.penalize(peer, PENALTY_MALFORMED, f"{kind} malformed: {error}")

    def _receive_offers(self, peer: bytes, body: Any) -> None:
        if peer not in self._offers_answered and peer in self._offers_asked:
            self._offers_answered.add(peer)  # one answer per request: a repeat is unsolicited
        else:
            self.peers.penalize(peer, PENALTY_UNSOLICITED, "unsolicited snapshots")
            return
        self.book.offer(peer, parse_offers(body))
        self._heads_unknown.add(peer)
        self._check_heads()
        self._wake.set()

    def _check_heads(self) -> None:
        """Offers above the head their peer announced are not final anywhere: charged and
        dropped. A peer whose offers came before its `status` is checked once that is heard."""
        for peer in list(self._heads_unknown):
            head = self.claimed_height(peer)
            if head is None:
                continue
            self._heads_unknown.discard(peer)
            offers = self.book.offers_of(peer)
            if any(offer.height > head for offer in offers):
                highest = max(offer.height for offer in offers)
                self.peers.penalize(peer, PENALTY_BAD_HEADER, f"offers a snapshot of height {highest} above its "
                                                              f"own head {head}: not final")
                self.book.offer(peer, [offer for offer in offers if offer.height <= head])

    def _silent(self, peer: bytes, kind: str) -> None:
        """A request left unanswered for `chunk_request_timeout_s` (a peer that offered a
        snapshot and then serves nothing is charged like one that sends no chunk)."""
        self.peers.penalize(peer, PENALTY_SILENT, f"{kind} not answered in time")

    def _resolve(self, peer: bytes, kind: str, key: Any, answer: Any) -> None:
        if not self.requests.resolve(peer, kind, key, answer):
            self.peers.penalize(peer, PENALTY_UNSOLICITED, f"unsolicited {kind}")

    def _receive_chunk(self, peer: bytes, body: Any) -> None:
        answer = parse_chunk_answer(body)
        current = self._fetch
        if current is None or (answer.height, answer.chunk_depth) != (current[0].height, current[0].chunk_depth) \
                or not current[1].asked(answer.index, peer):
            if not self.requests.was_asked(peer, "chunk", (answer.height, answer.chunk_depth, answer.index)):
                self.peers.penalize(peer, PENALTY_UNSOLICITED, f"unsolicited chunk {answer.index}")
            return
        fetcher = current[1]
        if answer.chunk is None:
            fetcher.not_served(peer, answer.index)
        elif len(answer.chunk) > MAX_CHUNK_BYTES:  # cheap, before it is kept
            self._bad_chunk(fetcher, answer.index, peer, f"over {MAX_CHUNK_BYTES} bytes")  # the loop drops it
        else:
            fetcher.arrived(peer, answer.index, answer.chunk)
        self._wake.set()

    # --- the run ----------------------------------------------------------------------

    async def _in_thread(self, function: Callable[..., Any], *arguments: Any) -> Any:
        """Run blocking work (a chunk check, a restore batch) off the loop; a cancelled caller
        does not cut it short (`idle` waits for it before the database closes)."""
        task = asyncio.ensure_future(asyncio.to_thread(function, *arguments))
        self._thread = task
        return await asyncio.shield(task)

    async def idle(self) -> None:
        """Wait until no blocking work of this state sync is running."""
        if self._thread is not None:
            await asyncio.gather(self._thread, return_exceptions=True)

    async def run(self) -> int | None:
        """Restore a verified snapshot; its height (block sync continues from H + 1), or None
        if no usable snapshot was found within `discovery_timeout_s` (the store is at genesis)."""
        self._started = self.clock()
        for peer in self.connected():
            self.peer_connected(peer)
        pending = await self._in_thread(self.restore.pending)
        if pending is not None:
            height = await self._resume(pending)
            if height is not None:
                return height
        await self._discover()
        deadline = self._started + self.config.discovery_timeout_s
        while True:
            self._check_heads()
            for key in self.book.candidates():
                height = await self._try(key)
                if height is not None:
                    return height
                if self.chunks_total:  # a restore was begun and failed: wait as long again for another
                    deadline = max(deadline, self.clock() + self.config.discovery_timeout_s)
                    self.chunks_total = self.chunks_done = 0
            if self.clock() >= deadline:
                return await self._give_up()
            self.phase = "discovering"
            await self._wait(deadline)

    async def _discover(self) -> None:
        """Collect offers for `discovery_time_s`, or less once every peer asked (at least
        `expected_peers` of them) has answered and a snapshot is offered."""
        until = self._started + self.config.discovery_time_s
        while self.clock() < until:
            answered = self._offers_answered
            self._check_heads()
            if (answered and answered >= self._offers_asked and len(answered) >= self.expected_peers
                    and not self._heads_unknown & answered and self.book.candidates()):
                return
            await self._wait(until)

    async def _give_up(self) -> None:
        self.phase = "failed"
        log.error("state sync: no peer offered a snapshot that verified within %d s; block sync from genesis "
                  "instead", self.config.discovery_timeout_s,
                  extra=log_fields(event="statesync_failed", timeout_s=self.config.discovery_timeout_s))
        if await self._in_thread(self.restore.pending) is not None:
            await self._in_thread(self.restore.abandon, self.genesis)
        return None

    async def _wait(self, deadline: float) -> None:
        """Until something arrives, a second passes, or the deadline."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), max(0.0, min(WAKE_INTERVAL_S, deadline - self.clock())))
        except TimeoutError:
            pass

    async def _resume(self, pending: Any) -> int | None:
        """Continue an interrupted restore if a peer still serves its exact manifest."""
        manifest: Manifest = pending.manifest
        key = SnapshotKey(manifest.height, manifest.chunk_depth)
        wanted = manifest.encode()
        self.height, self.chunks_total, self.chunks_done = key.height, len(manifest.chunks), len(pending.done)
        self.metrics.chosen(self.chunks_total, self.chunks_done)
        log.info("state sync: resuming the restore of height %d (%d/%d chunks)", key.height, self.chunks_done,
                 self.chunks_total, extra=log_fields(event="statesync_resume", height=key.height,
                                                     chunks_done=self.chunks_done, chunks=self.chunks_total))
        deadline = self._started + self.config.discovery_timeout_s
        tried: set[bytes] = set()
        while self.clock() < deadline:
            offering = [peer for peer in self.book.offering(key) if peer not in tried]
            tried.update(offering)
            answers = await asyncio.gather(*(self._manifest_of(peer, key) for peer in offering))
            same = [peer for peer, raw in zip(offering, answers, strict=True) if raw == wanted]
            if same:
                missing = [index for index in range(self.chunks_total) if index not in pending.done]
                try:
                    return await self._restore(key, manifest, same, missing)
                except ManifestDropped:
                    self._charge_servers(same, key)
                    return None
            await self._wait(deadline)
        log.info("state sync: no peer serves the interrupted snapshot of height %d any more; choosing anew",
                 key.height, extra=log_fields(event="statesync_resume_abandoned", height=key.height))
        return None

    async def _try(self, key: SnapshotKey) -> int | None:
        """Verify, fetch and restore one candidate; its height, or None if it did not work out."""
        self.phase, self.height = "verifying", key.height
        verified = await self._verify(key)
        if verified is None:
            return None
        chosen = await self._choose_manifest(key, verified)
        if chosen is None:
            return None
        manifest, manifest_peers = chosen
        await self._in_thread(self.restore.begin, manifest, verified.header_bytes, verified.commit_bytes,
                                verified.change_points)
        self.chunks_total, self.chunks_done = len(manifest.chunks), 0
        self.metrics.chosen(self.chunks_total, 0)
        log.info("state sync: restoring height %d from %d peers (%d chunks)", key.height, len(manifest_peers),
                 self.chunks_total, extra=log_fields(event="statesync_chosen", height=key.height,
                                                     peers=len(manifest_peers), chunks=self.chunks_total))
        try:
            return await self._restore(key, manifest, manifest_peers, range(self.chunks_total))
        except ManifestDropped:
            self._charge_servers(manifest_peers, key)
            return None

    def _charge_servers(self, manifest_peers: list[bytes], key: SnapshotKey) -> None:
        """Chunks from two peers failed against the manifest: it is dropped, its servers charged (R39)."""
        self.metrics.bad_manifest()
        for peer in manifest_peers:
            self.peers.penalize(peer, PENALTY_BAD_MANIFEST, f"served the manifest of height {key.height} "
                                                            "that chunks from two peers failed against (R39)")
        self.book.drop(key)
        log.warning("state sync: the manifest of height %d is dropped: chunks from two peers failed against it",
                    key.height, extra=log_fields(event="statesync_manifest_dropped", height=key.height))

    # --- verifying a candidate ----------------------------------------------------------

    async def _verify(self, key: SnapshotKey) -> Verified | None:
        """The candidate's header verified by R37 through an offering peer, or None."""
        for peer in self.book.offering(key)[:HEADER_PEERS_TRIED]:
            verified = await verify_from(self.requests, self.genesis, peer, key.height, self._in_thread)
            if isinstance(verified, Verified):
                return verified
            if verified is not None:
                self.peers.penalize(peer, PENALTY_BAD_HEADER, f"snapshot of height {key.height}: {verified}")
                log.warning("state sync: the header of height %d from %s does not verify: %s", key.height,
                            peer.hex()[:12], verified, extra=log_fields(event="statesync_bad_header",
                                                                        height=key.height, peer=peer.hex()))
            self.book.refuse(peer, key)
        return None

    async def _manifest_of(self, peer: bytes, key: SnapshotKey) -> bytes | None:
        answer = await self.requests.ask(peer, "manifest_request", {"chunk_depth": key.chunk_depth, "height": key.height},
                                 "manifest", (key.height, key.chunk_depth))
        return None if answer is None else answer.manifest

    async def _choose_manifest(self, key: SnapshotKey, verified: Verified) -> tuple[Manifest, list[bytes]] | None:
        """The manifest served identically by the most offering peers that folds to the verified root."""
        offering = self.book.offering(key)
        answers = await asyncio.gather(*(self._manifest_of(peer, key) for peer in offering))
        votes = ManifestVotes()
        for peer, raw in zip(offering, answers, strict=True):
            if raw is None:
                self.book.refuse(peer, key)  # does not have it (any more): not asked for it again
                continue
            problem = manifest_problem(raw, key, verified.header.header.state_root)
            if problem is not None:
                self.metrics.bad_manifest()
                self.peers.penalize(peer, PENALTY_BAD_MANIFEST, f"manifest of height {key.height}: {problem}")
                self.book.refuse(peer, key)
                continue
            votes.served(peer, raw)
        best = votes.best()
        if best is None:
            return None
        raw, manifest_peers = best
        return manifest_from_map(codec.decode(raw)), manifest_peers

    # --- fetching chunks ----------------------------------------------------------------

    async def _restore(self, key: SnapshotKey, manifest: Manifest, manifest_peers: list[bytes],
                       missing: Any) -> int | None:
        """Fetch, check and write the missing chunks, then finish; the height, or None if
        every peer serving the manifest went away or failed. `ManifestDropped` (R39)."""
        self.phase = "fetching"
        fetcher = ChunkFetcher(missing, manifest_peers, self.config.chunk_fetchers,
                               self.config.chunk_request_timeout_s)
        self._fetch = (key, fetcher)
        self._manifest_failed = False
        considered = set(manifest_peers)
        recruiting: set[asyncio.Task[None]] = set()
        stuck_since: float | None = None
        try:
            while not fetcher.finished:
                if self._manifest_failed:
                    raise ManifestDropped(f"chunks from {len(fetcher.bad_peers)} peers failed")
                for peer in self.book.offering(key):  # peers that came since: they serve the same bytes?
                    if peer not in considered:
                        considered.add(peer)
                        task = asyncio.get_running_loop().create_task(self._recruit(peer, key, manifest, fetcher))
                        recruiting.add(task)
                        task.add_done_callback(recruiting.discard)
                self._send_requests(key, fetcher)
                received = fetcher.take()
                if received is not None:
                    await self._check_and_write(manifest, fetcher, received.index, received.peer, received.raw)
                    continue
                stuck_since = (stuck_since or self.clock()) if fetcher.stuck else None
                if stuck_since is not None and self.clock() - stuck_since >= self.config.discovery_timeout_s:
                    log.warning("state sync: no peer left that serves the manifest of height %d", key.height,
                                extra=log_fields(event="statesync_no_peers", height=key.height))
                    for peer in fetcher.not_serving | fetcher.bad_peers:
                        self.book.refuse(peer, key)  # those that left may offer it again when back
                    self.chunks_total = self.chunks_done = 0  # it waited already: no longer wait again
                    return None
                deadline = fetcher.next_deadline()
                await self._wait(deadline if deadline is not None else self.clock() + WAKE_INTERVAL_S)
        finally:
            self._fetch = None
            for task in list(recruiting):
                task.cancel()
        self.phase = "finishing"
        await self._in_thread(self.restore.finish)
        self.phase = "done"
        log.info("state sync: restored the state of height %d in %.1f s; block sync continues from %d",
                 key.height, self.clock() - self._started, key.height + 1,
                 extra=log_fields(event="statesync_done", height=key.height))
        return key.height

    async def _recruit(self, peer: bytes, key: SnapshotKey, manifest: Manifest, fetcher: ChunkFetcher) -> None:
        """A peer that offers the snapshot being fetched joins the fetch set if it serves the
        same manifest bytes (a different manifest is refused like any other, R39)."""
        raw = await self._manifest_of(peer, key)
        if raw is None or peer in fetcher.bad_peers or peer in fetcher.not_serving:
            return
        if raw == manifest.encode():
            fetcher.peers.add(peer)
            self._wake.set()
            return
        problem = manifest_problem(raw, key, manifest.state_root)
        if problem is not None:
            self.metrics.bad_manifest()
            self.peers.penalize(peer, PENALTY_BAD_MANIFEST, f"manifest of height {key.height}: {problem}")
        self.book.refuse(peer, key)

    def _send_requests(self, key: SnapshotKey, fetcher: ChunkFetcher) -> None:
        now = self.clock()
        for index, peer in fetcher.expired(now):
            self.peers.penalize(peer, PENALTY_SILENT, f"chunk {index} of height {key.height} not sent in time")
        for index, peer in fetcher.next_requests(now):
            body = {"chunk_depth": key.chunk_depth, "height": key.height, "index": index}
            if self.send(peer, "chunk_request", body):
                self.requests.note(peer, "chunk", (key.height, key.chunk_depth, index))
            else:
                fetcher.unsent(index, peer)

    async def _check_and_write(self, manifest: Manifest, fetcher: ChunkFetcher, index: int, peer: bytes,
                               raw: bytes) -> None:
        try:
            tree = await self._in_thread(check_chunk_tree, manifest, index, raw)
        except InvalidSnapshot as error:
            self._bad_chunk(fetcher, index, peer, str(error))
            return
        await self._in_thread(self.restore.write_chunk, index, tree)
        fetcher.written(index)
        self.chunks_done += 1
        self.metrics.chunk_done()

    def _bad_chunk(self, fetcher: ChunkFetcher, index: int, peer: bytes, problem: str) -> None:
        """A chunk failed against the manifest its sender served itself (R39)."""
        self.metrics.bad_chunk()
        self.peers.penalize(peer, PENALTY_BAD_CHUNK, f"chunk {index} fails against its manifest: {problem}")
        log.warning("state sync: chunk %d from %s refused: %s", index, peer.hex()[:12], problem,
                    extra=log_fields(event="statesync_bad_chunk", index=index, peer=peer.hex(), error=problem))
        if fetcher.bad(index, peer):
            self._manifest_failed = True  # the fetch loop raises ManifestDropped

