"""The load of a fault scenario: transfers sent at a rate from a background thread,
watched until final, resent (same bytes) when a node died before gossiping them.

The generator is a good client: a 429 `rate_limited` answer is retried after its
`Retry-After` within the request budget, and a submission still refused that way is
sent again later, never counted as a rejection.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from marketplace_tx.chain.transaction import sign_transaction
from tests.e2e.harness.http_client import RATE_LIMITED, http_get, http_post
from tests.e2e.harness.scenarios import Load
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.testnet_harness import Testnet

REQUEST_TIMEOUT_S = 3.0
"""HTTP timeout of the load generator: a paused node must not hold it up long."""

RESEND_AFTER_S = 3.0
"""A sender's oldest transaction not final this long is sent again (same bytes) to a node."""




@dataclass
class SentTx:
    """A transfer of the load, not yet seen final."""

    sender: str
    """The dev account that signed it."""
    nonce: int
    """Its nonce."""
    hash: str
    """Its hash (hex)."""
    raw: bytes
    """Its signed bytes, posted again unchanged when it seems lost."""
    last_sent: float = 0.0
    """Monotonic time it was last posted (0: never accepted yet)."""


@dataclass(frozen=True)
class FinalTx:
    """A transfer seen committed at some node."""

    hash: str
    """Its hash (hex)."""
    height: int
    """The height of the block that holds it, as first reported."""
    block_hash: str
    """That block's hash (hex)."""
    node: str
    """The node that first reported it committed."""
    seen_at_s: float
    """Seconds after the schedule started."""


class LoadGenerator:
    """Sends transfers at a rate from a background thread and watches them become final.

    Each sender signs consecutive nonces itself; a transaction whose node dies before
    gossiping it is sent again, same bytes, to another node, so that no nonce gap
    stalls a sender. Only nodes that run and are not paused are asked.
    """

    def __init__(self, net: Testnet, load: Load, rng: random.Random, origin: float) -> None:
        self.net = net
        """The testnet it sends to."""
        self.load = load
        """Senders, rate, window."""
        self.rng = rng
        """Chooses senders, recipients, amounts and nodes (seeded: runs repeat)."""
        self.origin = origin
        """Monotonic time the schedule started."""
        self.final: dict[str, FinalTx] = {}
        """Every load transaction seen committed, by hash."""
        self.unconfirmed: dict[str, list[SentTx]] = {sender: [] for sender in load.senders}
        """Per sender, its transactions not yet seen final, in nonce order."""
        self.heights: list[tuple[float, int, int]] = []
        """(seconds after origin, wall clock ms, height) of every /status read."""
        self.rejections: list[str] = []
        """Unexpected answers to a submission."""
        self.submitted = 0
        """Distinct transactions signed and sent."""
        self._nonces: dict[str, int] = {}
        self._min_fee = 0
        self._sending = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    def start(self) -> None:
        """Read the senders' nonces, then send and watch in the background."""
        node = self.net.available_nodes[0]
        for sender in self.load.senders:
            self._nonces[sender] = node.get_ok(f"/accounts/{self.net.address(sender).hex()}")["nonce"]
        self._min_fee = node.status()["min_fee"]
        self._sending.set()
        self._thread.start()

    def stop_sending(self) -> None:
        """No new transactions; those sent are still watched and resent."""
        self._sending.clear()

    def close(self) -> None:
        """Stop the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(30)
        if self._failure is not None:
            raise AssertionError(f"the load generator failed: {self._failure!r}")

    def outstanding(self) -> int:
        """Transactions sent and not yet seen final."""
        with self._lock:
            return sum(len(queue) for queue in self.unconfirmed.values())

    def _elapsed(self) -> float:
        return time.monotonic() - self.origin

    def _run(self) -> None:
        next_send = time.monotonic()
        turn = 0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._sending.is_set() and now >= next_send:
                    self._send_new()
                    next_send = max(next_send + 1.0 / self.load.rate, now - 1.0)
                self._watch()
                self._resend_stuck()
                nodes = self.net.available_nodes
                if nodes:
                    self._observe(nodes[turn % len(nodes)])
                    turn += 1
                time.sleep(0.05)
        except BaseException as error:  # reported by close()
            self._failure = error

    def _pick(self) -> NodeHandle | None:
        nodes = self.net.available_nodes
        return self.rng.choice(nodes) if nodes else None

    def _send_new(self) -> None:
        with self._lock:
            candidates = [sender for sender, queue in self.unconfirmed.items() if len(queue) < self.load.window]
        if not candidates:
            return
        sender = min(candidates, key=lambda name: (len(self.unconfirmed[name]), self.rng.random()))
        recipient = self.rng.choice([name for name in ("faucet", "alice", "bob", "carol", "dave", "erin")
                                     if name != sender])
        nonce = self._nonces[sender]
        payload = {"to": self.net.address(recipient), "amount": self.rng.randint(1, 1000)}
        tx = sign_transaction(self.net.keys[sender], self.net.chain_id, "transfer", payload, nonce, self._min_fee)
        sent = SentTx(sender, nonce, tx.hash.hex(), tx.raw)
        self._nonces[sender] = nonce + 1
        self.submitted += 1
        with self._lock:
            self.unconfirmed[sender].append(sent)
        self._post(sent)

    def _post(self, sent: SentTx) -> None:
        node = self._pick()
        if node is None:
            return
        try:
            code, body = http_post(node.url + "/txs", sent.raw, timeout=REQUEST_TIMEOUT_S,
                                   patience_s=REQUEST_TIMEOUT_S)
        except OSError:
            return
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if code == RATE_LIMITED:
            return  # not sent: the node asked us to slow down; `_resend_stuck` sends it later
        if code == 202 or error.get("code") in ("duplicate", "bad_nonce"):  # held already, or already final
            sent.last_sent = time.monotonic()
        else:
            self.rejections.append(f"{node.name}: POST /txs {sent.hash[:12]} answered {code}: {body!r}")

    def _watch(self) -> None:
        """Ask a node about each sender's oldest transactions, in nonce order."""
        for queue in self.unconfirmed.values():
            while queue:
                node = self._pick()
                if node is None:
                    return
                try:
                    code, body = http_get(f"{node.url}/txs/{queue[0].hash}", timeout=REQUEST_TIMEOUT_S,
                                          patience_s=REQUEST_TIMEOUT_S)
                except OSError:
                    break
                if code != 200 or body.get("status") != "committed":
                    break
                with self._lock:
                    sent = queue.pop(0)
                self.final[sent.hash] = FinalTx(sent.hash, body["height"], body["block_hash"], node.name,
                                                self._elapsed())

    def _resend_stuck(self) -> None:
        now = time.monotonic()
        for queue in self.unconfirmed.values():
            if queue and now - queue[0].last_sent > RESEND_AFTER_S:
                for sent in list(queue):
                    self._post(sent)

    def _observe(self, node: NodeHandle) -> None:
        try:
            code, body = http_get(node.url + "/status", timeout=REQUEST_TIMEOUT_S, patience_s=REQUEST_TIMEOUT_S)
        except OSError:
            return
        if code == 200:
            self.heights.append((self._elapsed(), int(time.time() * 1000), body["height"]))
