"""Load generator: drives running nodes over HTTP on loopback, from its own process.

It signs every measured transaction before the clock starts (so that its own CPU use
during the run is only HTTP), submits them with `POST /txs/batch` (canonical msgpack
arrays), and watches the chain for finality by polling `GET /status` and reading new
blocks with `GET /blocks/{height}/raw`. A transaction's latency is from the moment its
batch was sent to the moment the loader first saw a height holding it.

    .venv/bin/python bench/load.py transfers --node http://127.0.0.1:PORT --faucet DIR/accounts/faucet.json \\
        --txs 40000 --senders 500 [--rate 2000] --out result.json
    .venv/bin/python bench/load.py marketplace --node URL --faucet FILE --orders 3000 --out result.json

`bench/run.py` starts the nodes and runs this as a separate process for every scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import nacl.bindings

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import signing_bytes

MSGPACK = {"Content-Type": "application/msgpack"}
BATCH = 1000
"""Most transactions in one `POST /txs/batch`."""
WINDOW = 64
"""How far ahead of its final nonce a sender submits (the mempool's nonce window, R10)."""
FEE = 10
POLL_S = 0.02
"""How often the loader asks for the height."""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank); 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class Signer:
    """An Ed25519 key kept expanded, so that signing costs one libsodium call."""

    def __init__(self, seed: bytes) -> None:
        self.address, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self.nonce = 0
        """The nonce of the next transaction this signer makes."""

    @classmethod
    def named(cls, label: str) -> Signer:
        """A deterministic key for a bench role and index."""
        return cls(hashlib.sha256(label.encode()).digest())

    def sign(self, chain_id: str, tx_type: str, payload: dict[str, Any]) -> tuple[bytes, bytes]:
        """The canonical bytes and hash of a new signed transaction (R8, R9); bumps the nonce."""
        body = {"chain_id": chain_id, "fee": FEE, "nonce": self.nonce, "payload": payload,
                "sender": self.address, "type": tx_type}
        self.nonce += 1
        signature = nacl.bindings.crypto_sign(signing_bytes("tx", body), self._secret)[:64]
        raw = codec.encode({**body, "sig": signature})
        return raw, hashlib.sha256(raw).digest()


class Chain:
    """The nodes under load and what the loader has seen final."""

    def __init__(self, session: aiohttp.ClientSession, nodes: list[str]) -> None:
        self.session = session
        self.nodes = nodes
        self.height = 0
        self.final_at: dict[bytes, float] = {}
        """Tx hash → monotonic time the loader saw it final."""
        self.block_sizes: list[int] = []
        self.post_seconds: list[float] = []
        """How long each `POST /txs/batch` took."""
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def get_json(self, path: str, node: int = 0) -> Any:
        async with self.session.get(self.nodes[node] + path) as response:
            return await response.json()

    async def start(self) -> None:
        status = await self.get_json("/status")
        self.chain_id = status["chain_id"]
        self.height = status["height"]
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            try:
                height = (await self.get_json("/status"))["height"]
                seen = time.monotonic()
                for next_height in range(self.height + 1, height + 1):
                    async with self.session.get(f"{self.nodes[0]}/blocks/{next_height}/raw") as response:
                        block = msgpack.unpackb(await response.read(), raw=False)
                    for raw in block["txs"]:
                        self.final_at[hashlib.sha256(raw).digest()] = seen
                    self.block_sizes.append(len(block["txs"]))
                    self.height = next_height
                    self.changed.set()
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(POLL_S)

    async def submit(self, raws: list[bytes], node: int = 0) -> list[dict[str, Any]]:
        """POST a batch; per-transaction `{hash}` or `{error}`."""
        body = codec.encode(raws)
        began = time.monotonic()
        async with self.session.post(self.nodes[node] + "/txs/batch", data=body, headers=MSGPACK) as response:
            value = await response.json()
        if "results" not in value:
            raise RuntimeError(f"batch rejected: {value}")
        self.post_seconds.append(time.monotonic() - began)
        return value["results"]

    async def wait_final(self, hashes: Sequence[bytes], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(tx_hash in self.final_at for tx_hash in hashes):
            if time.monotonic() > deadline:
                missing = sum(tx_hash not in self.final_at for tx_hash in hashes)
                raise RuntimeError(f"{missing} transactions not final after {timeout:.0f} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 1.0)
            except TimeoutError:
                pass

    async def submit_and_wait(self, signed: list[tuple[bytes, bytes]]) -> None:
        """Submit (setup transactions, in order), fail on any rejection, wait until final."""
        for start in range(0, len(signed), BATCH):
            chunk = signed[start:start + BATCH]
            for result in await self.submit([raw for raw, _ in chunk]):
                if "error" in result:
                    raise RuntimeError(f"setup transaction rejected: {result['error']}")
        await self.wait_final([tx_hash for _, tx_hash in signed])


async def fund(chain: Chain, faucet: Signer, recipients: Sequence[bytes], amount: int) -> None:
    """Fund many accounts through a tree (faucet → ≤64 distributors → ≤64 each), two blocks."""
    status = await chain.get_json(f"/accounts/{faucet.address.hex()}")
    faucet.nonce = status["pending_nonce"]
    groups = [recipients[start:start + WINDOW] for start in range(0, len(recipients), WINDOW)]
    distributors = [Signer.named(f"distributor-{faucet.address.hex()}-{time.time_ns()}-{index}")
                    for index in range(len(groups))]
    for start in range(0, len(distributors), WINDOW):
        chunk = distributors[start:start + WINDOW]
        await chain.submit_and_wait([
            faucet.sign(chain.chain_id, "transfer", {"to": distributor.address, "amount": amount * WINDOW + 10**6})
            for distributor in chunk])
    signed = [distributor.sign(chain.chain_id, "transfer", {"to": address, "amount": amount})
              for distributor, group in zip(distributors, groups, strict=True) for address in group]
    await chain.submit_and_wait(signed)


def load_faucet(path: Path) -> Signer:
    return Signer(bytes.fromhex(json.loads(path.read_text())["secret_seed"]))


# --- transfers ------------------------------------------------------------------------


async def run_transfers(chain: Chain, faucet: Signer, txs: int, senders: int, rate: float | None,
                        tag: str, workers: int = 2) -> dict[str, Any]:
    """Transfers between `senders` fresh accounts; max load (rate None: `workers` batches in
    flight per node) or `rate` tx/s."""
    keys = [Signer.named(f"sender-{tag}-{index}") for index in range(senders)]
    per_sender = -(-txs // senders)
    await fund(chain, faucet, [key.address for key in keys], per_sender * (FEE + 1) + 10**6)
    queues = [[key.sign(chain.chain_id, "transfer", {"to": keys[(index + 1) % senders].address, "amount": 1})
               for _ in range(per_sender)] for index, key in enumerate(keys)]
    total = per_sender * senders
    submitted_at: dict[bytes, float] = {}
    next_index = [0] * senders
    retry: list[list[int]] = [[] for _ in range(senders)]
    errors: Counter[str] = Counter()
    failed = 0
    nodes = len(chain.nodes)
    started = time.monotonic()

    def final_count(sender: int) -> int:
        count = 0
        queue = queues[sender]
        while count < next_index[sender] and queue[count][1] in chain.final_at:
            count += 1
        return count

    final_counts = [0] * senders

    def take(node: int, limit: int) -> list[tuple[int, int]]:
        batch: list[tuple[int, int]] = []
        for sender in range(node, senders, nodes):
            if len(batch) >= limit:
                break
            while retry[sender] and len(batch) < limit:
                batch.append((sender, retry[sender].pop(0)))
            if next_index[sender] - final_counts[sender] >= WINDOW:
                final_counts[sender] = final_count(sender)
            while (next_index[sender] < per_sender and len(batch) < limit
                   and next_index[sender] - final_counts[sender] < WINDOW):
                batch.append((sender, next_index[sender]))
                next_index[sender] += 1
        return batch

    sent_by_node = [0] * nodes

    async def worker(node: int) -> None:
        nonlocal failed
        while len(submitted_at) + failed < total:
            limit = BATCH
            if rate is not None:
                due = int(rate / nodes * (time.monotonic() - started)) - sent_by_node[node]
                if due < min(100, total // nodes - sent_by_node[node]):
                    await asyncio.sleep(0.01)
                    continue
                limit = min(BATCH, max(due, 1))
            batch = take(node, limit)
            if not batch:
                await asyncio.sleep(0.005)
                continue
            sent = time.monotonic()
            sent_by_node[node] += len(batch)
            results = await chain.submit([queues[sender][index][0] for sender, index in batch], node)
            for (sender, index), result in zip(batch, results, strict=True):
                if "error" in result:
                    code = result["error"]["code"]
                    if code == "mempool_full":
                        retry[sender].append(index)
                        continue
                    if code != "duplicate":
                        errors[code] += 1
                        failed += 1
                        continue
                submitted_at.setdefault(queues[sender][index][1], sent)

    workers = [asyncio.create_task(worker(node)) for node in range(nodes) for _ in range(workers if rate is None else 1)]
    await asyncio.gather(*workers)
    await chain.wait_final(list(submitted_at), timeout=300)
    return summarize(chain, submitted_at, errors)


def summarize(chain: Chain, submitted_at: dict[bytes, float], errors: Counter[str]) -> dict[str, Any]:
    latencies = [chain.final_at[tx_hash] - sent for tx_hash, sent in submitted_at.items()]
    first = min(submitted_at.values())
    last = max(chain.final_at[tx_hash] for tx_hash in submitted_at)
    return {
        "txs_final": len(submitted_at),
        "seconds": round(last - first, 3),
        "tx_per_second": round(len(submitted_at) / (last - first), 1),
        "latency_ms": {name: round(1000 * percentile(latencies, fraction), 1)
                       for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))},
        "rejected": dict(errors),
        "height": chain.height,
        "largest_block_txs": max(chain.block_sizes, default=0),
        "batch_post_ms": {"p50": round(1000 * percentile(chain.post_seconds, 0.5), 1),
                          "p95": round(1000 * percentile(chain.post_seconds, 0.95), 1)},
    }


# --- marketplace ----------------------------------------------------------------------


async def run_marketplace(chain: Chain, faucet: Signer, orders: int, wave: int, tag: str) -> dict[str, Any]:
    """Orders through completion and a review, in pipelined waves (see `marketplace_steps`)."""
    merchants = [Signer.named(f"merchant-{tag}-{index}") for index in range(max(1, -(-2 * wave // 60)))]
    carriers = [Signer.named(f"carrier-{tag}-{index}") for index in range(max(1, -(-wave // 60)))]
    buyers = [Signer.named(f"buyer-{tag}-{index}") for index in range(wave)]
    await fund(chain, faucet, [key.address for key in merchants + carriers + buyers], 10**10)
    await chain.submit_and_wait([
        faucet.sign(chain.chain_id, "role_grant", {"account": carrier.address, "role": "carrier",
                                                   "evidence_hash": bytes(32)}) for carrier in carriers])
    shops = [merchant.sign(chain.chain_id, "shop_create", {"name": f"shop {index}", "points_bps": 100,
                                                           "max_redeem_bps": 0})
             for index, merchant in enumerate(merchants)]
    await chain.submit_and_wait(shops)
    listings = [merchant.sign(chain.chain_id, "listing_create", {"shop_id": shop_hash, "title": "tea",
                                                                 "price": 1000, "stock": orders})
                for merchant, (_, shop_hash) in zip(merchants, shops, strict=True)]
    await chain.submit_and_wait(listings)
    steps = marketplace_steps(chain.chain_id, orders, wave, merchants, carriers, buyers,
                              [listing_hash for _, listing_hash in listings])
    submitted_at: dict[bytes, float] = {}
    errors: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for step in steps:
        sent = time.monotonic()
        for start in range(0, len(step), BATCH):
            chunk = step[start:start + BATCH]
            results = await chain.submit([raw for raw, _, _ in chunk])
            for (_, tx_hash, tx_type), result in zip(chunk, results, strict=True):
                if "error" in result:
                    errors[result["error"]["code"]] += 1
                else:
                    submitted_at[tx_hash] = sent
                    counts[tx_type] += 1
        await chain.wait_final([tx_hash for _, tx_hash, _ in step if tx_hash in submitted_at])
    summary = summarize(chain, submitted_at, errors)
    summary["per_type"] = dict(counts)
    summary["receipts_failed"] = await failed_receipts(chain, [tx_hash for tx_hash, _ in list(submitted_at.items())[-50:]])
    return summary


async def failed_receipts(chain: Chain, hashes: Sequence[bytes]) -> int:
    """How many of a sample of transactions have a failed receipt (should be 0)."""
    failed = 0
    for tx_hash in hashes:
        value = await chain.get_json(f"/txs/{tx_hash.hex()}")
        failed += not value.get("result", {}).get("ok", False)
    return failed


def marketplace_steps(chain_id: str, orders: int, wave: int, merchants: list[Signer], carriers: list[Signer],
                      buyers: list[Signer], listing_ids: list[bytes]) -> list[list[tuple[bytes, bytes, str]]]:
    """Pre-signed steps: step t holds order_place of wave t, order_accept of wave t−1, order_ship
    of t−2, shipment_update (delivered) of t−3, order_confirm of t−4 and review_submit of t−5.
    A step is sent once the previous one is final, so every transaction finds its order ready."""
    waves = -(-orders // wave)
    placed: dict[int, list[tuple[int, bytes]]] = {}
    steps = []
    for step_index in range(waves + 5):
        step: list[tuple[bytes, bytes, str]] = []
        if step_index < waves:
            placed[step_index] = []
            for position in range(min(wave, orders - step_index * wave)):
                shop = position % len(merchants)
                raw, tx_hash = buyers[position].sign(chain_id, "order_place", {
                    "listing_id": listing_ids[shop], "quantity": 1, "max_unit_price": 1000,
                    "shipping": b"\x00" * 80})
                placed[step_index].append((shop, tx_hash))
                step.append((raw, tx_hash, "order_place"))

        def phase(wave_index: int, make: Any, tx_type: str, step: list = step) -> None:
            for position, (shop, order_id) in enumerate(placed.get(wave_index, [])):
                raw, tx_hash = make(position, shop, order_id)
                step.append((raw, tx_hash, tx_type))

        phase(step_index - 1, lambda position, shop, order_id: merchants[shop].sign(
            chain_id, "order_accept", {"order_id": order_id}), "order_accept")
        phase(step_index - 2, lambda position, shop, order_id: merchants[shop].sign(
            chain_id, "order_ship", {"order_id": order_id, "carrier": carriers[position % len(carriers)].address,
                                     "tracking": f"SF{position:08d}"}), "order_ship")
        phase(step_index - 3, lambda position, shop, order_id: carriers[position % len(carriers)].sign(
            chain_id, "shipment_update", {"order_id": order_id, "status": "delivered", "location": "door"}),
            "shipment_update")
        phase(step_index - 4, lambda position, shop, order_id: buyers[position].sign(
            chain_id, "order_confirm", {"order_id": order_id}), "order_confirm")
        phase(step_index - 5, lambda position, shop, order_id: buyers[position].sign(
            chain_id, "review_submit", {"order_id": order_id, "rating": 5, "text": "fragrant"}), "review_submit")
        steps.append(step)
    return steps


# --- main -----------------------------------------------------------------------------


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        chain = Chain(session, arguments.node)
        await chain.start()
        faucet = load_faucet(arguments.faucet)
        tag = arguments.tag or str(time.time_ns())
        try:
            if arguments.mode == "transfers":
                return await run_transfers(chain, faucet, arguments.txs, arguments.senders, arguments.rate, tag,
                                           arguments.workers)
            return await run_marketplace(chain, faucet, arguments.orders, arguments.wave, tag)
        finally:
            await chain.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("transfers", "marketplace"))
    parser.add_argument("--node", action="append", required=True, help="a node's base URL (repeat for several)")
    parser.add_argument("--faucet", type=Path, required=True, help="the funded registrar's key file")
    parser.add_argument("--txs", type=int, default=40_000)
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--rate", type=float, default=None, help="offered tx/s (default: as fast as accepted)")
    parser.add_argument("--workers", type=int, default=2, help="batches in flight per node at full load")
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--wave", type=int, default=600)
    parser.add_argument("--tag", default=None, help="seed label of the bench accounts (default: fresh)")
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args()
    result = asyncio.run(main_async(arguments))
    text = json.dumps(result, indent=2)
    if arguments.out is not None:
        arguments.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
