"""Testnets for the state-sync e2e tests (PROTOCOL §12 R37, R39, R40; issue 15).

`StateSyncTestnet` is a `Testnet` whose validators write a snapshot every
`snapshot_interval` heights (`MARKETCHAIN_STATESYNC_SNAPSHOT_INTERVAL` in the environment
of `marketchain testnet start`, kept for their restarts); it adds full nodes that serve
snapshots (honest, or with a test fault `MARKETCHAIN_TEST_SNAPSHOT_FAULT`) and joiners
(`[statesync] enable = true`, from `marketchain init --state-sync` or a config edit) that
may be started without waiting (a joiner killed by `MARKETCHAIN_TEST_RESTORE_CRASH` never
serves). The checks compare a joiner with the other nodes: blocks after its snapshot,
every object the market load touched (JSON of the reads, lists as sets since restored
read-index positions may order one block's objects differently), state proofs verified
with the light client against other nodes' headers, and 410 `pruned` below the snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.node_client import NodeClient
from client.state_verification import fetch_verified_header, verify_account, verify_order
from marketplace_tx.chain.genesis import Genesis, genesis_from_json
from marketplace_tx.primitives.sparse_merkle import StateProof, verify_state_proof
from marketplace_tx.rules.state_keys import account_key, order_key
from tests.e2e.harness.config_file import edit_config
from tests.e2e.harness.market_load import MarketLoad
from tests.e2e.harness.ports import free_port
from tests.e2e.testnet_harness import Manifest, NodeHandle, Testnet, wait_until
from tests.paths import REPO_ROOT

INTERVAL_VARIABLE = "MARKETCHAIN_STATESYNC_SNAPSHOT_INTERVAL"
"""The environment variable of `[statesync] snapshot_interval`."""

SNAPSHOT_FAULT_VARIABLE = "MARKETCHAIN_TEST_SNAPSHOT_FAULT"
"""Test-only misbehaviour of a snapshot server: `corrupt_chunk`, `wrong_manifest`, `unfinal`, `silent`."""

RESTORE_CRASH_VARIABLE = "MARKETCHAIN_TEST_RESTORE_CRASH"
"""Test-only SIGKILL of a joiner at a restore point: `begin`, `chunk:<k>`, `before_finish`, `after_finish`."""

SNAPSHOT_INTERVAL = 10
"""Heights between two snapshots of the test networks."""

JOINER_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "statesync": {"enable": True, "discovery_time_s": 2, "chunk_request_timeout_s": 3},
}
"""A joiner's config: state sync on, a short discovery (every peer answers on loopback at
once) and a short chunk timeout so that a silent peer is routed around quickly."""

SYNC_TIMEOUT = 180.0
"""Deadline of a whole state sync on a loaded 2-core machine."""


class StateSyncTestnet(Testnet):
    """Validators with snapshots on, plus snapshot servers and joiners added on demand."""

    __test__ = False

    def __init__(self, directory: Path, manifest: Manifest | None = None,
                 snapshot_interval: int = SNAPSHOT_INTERVAL) -> None:
        super().__init__(directory, manifest)
        self.snapshot_interval = snapshot_interval
        """`[statesync] snapshot_interval` of the validators and snapshot servers."""
        self.genesis_document: Genesis | None = None
        """The chain's genesis (node0's genesis.json), parsed once started."""

    def start_all(self) -> StateSyncTestnet:
        """`Testnet.start_all` with the snapshot interval in the nodes' environment."""
        previous = os.environ.get(INTERVAL_VARIABLE)
        os.environ[INTERVAL_VARIABLE] = str(self.snapshot_interval)
        try:
            super().start_all()
        finally:
            if previous is None:
                os.environ.pop(INTERVAL_VARIABLE, None)
            else:
                os.environ[INTERVAL_VARIABLE] = previous
        for node in self.nodes:
            node.env = {**node.env, INTERVAL_VARIABLE: str(self.snapshot_interval)}
        self.genesis_document = genesis_from_json((self.directory / "node0" / "genesis.json").read_text(),
                                                  "genesis.json")
        return self

    def __enter__(self) -> StateSyncTestnet:
        try:
            return self.start_all()
        except BaseException:
            self.close()
            raise

    # --- nodes ---------------------------------------------------------------------------

    def market(self, seed: str = "state-sync", buyers: int = 40) -> MarketLoad:
        """A market load signed by this testnet's faucet."""
        status = self.node(0).status()
        return MarketLoad(self.keys["faucet"], status["chain_id"], status["min_fee"], seed=seed, buyer_count=buyers)

    def add_node(self, name: str, peers: Iterable[int], options: Mapping[str, Mapping[str, Any]],
                 init_arguments: Sequence[str] = ()) -> NodeHandle:
        """`marketchain init` a full node from node0's genesis, peer it with `peers`, set
        `options`; not started."""
        home = self.directory / name
        http_port, p2p_port = free_port(), free_port()
        completed = subprocess.run(
            [sys.executable, "-m", "cli", "init", "--home", str(home), "--moniker", name,
             "--genesis", str(self.directory / "node0" / "genesis.json"),
             "--http-port", str(http_port), "--p2p-port", str(p2p_port), *init_arguments],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL,
        )
        assert completed.returncode == 0, f"init failed:\n{completed.stdout}\n{completed.stderr}"
        peer_addresses = [self.nodes[index].peer_address for index in peers]
        edit_config(home, {**options, "p2p": {"persistent_peers": peer_addresses}})
        node = NodeHandle(index=len(self.nodes), name=name, home=home, url=f"http://127.0.0.1:{http_port}",
                          p2p_port=p2p_port, validator=False)
        self.nodes.append(node)
        return node

    def add_snapshot_server(self, name: str, fault: str | None = None,
                            peers: Iterable[int] | None = None) -> NodeHandle:
        """A full node that block-syncs from the validators and writes snapshots like them,
        launched with the test fault `fault` (None: an honest one); see `wait_serving`."""
        chosen = list(range(self.manifest.validators)) if peers is None else list(peers)
        node = self.add_node(name, chosen, {"statesync": {"snapshot_interval": self.snapshot_interval}})
        self.launch(node.index, {SNAPSHOT_FAULT_VARIABLE: fault} if fault else {})
        return node

    def wait_serving(self, nodes: Iterable[NodeHandle]) -> None:
        """Wait until each of `nodes` (started by `launch`) answers `/status` as itself."""
        for node in nodes:
            expected = node.node_id

            def serving(node: NodeHandle = node, expected: str = expected) -> bool:
                if not node.running:
                    raise AssertionError(self.describe(f"{node.name} exited during start-up"))
                status = node.try_status()
                return status is not None and status.get("node_id") == expected

            wait_until(serving, self.timeout, lambda node=node: self.describe(f"{node.name} serving {node.url}"))

    def add_joiner(self, name: str, peers: Iterable[int], use_init_flag: bool = False,
                   options: Mapping[str, Any] | None = None) -> NodeHandle:
        """A fresh node that joins by state sync; not started. With `use_init_flag` its
        `[statesync] enable` comes from `marketchain init --state-sync`."""
        statesync = dict(JOINER_OPTIONS["statesync"])
        if use_init_flag:
            statesync.pop("enable")
        statesync.update(options or {})
        node = self.add_node(name, peers, {"statesync": statesync}, ("--state-sync",) if use_init_flag else ())
        if use_init_flag:
            text = (node.home / "config.toml").read_text()
            assert "enable = true" in text, f"init --state-sync did not enable state sync:\n{text}"
        return node

    def launch(self, index: int, env: Mapping[str, str] | None = None) -> None:
        """Start node `index` without waiting for it to serve (it may kill itself on purpose)."""
        node = self.nodes[index]
        assert not node.running, f"{node.name} is already running"
        node.env = dict(env or {})
        with open(node.log_path, "ab") as log_file:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "node", "start", "--home", str(node.home)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **node.env},
            )
        node.pid = node.process.pid

    def wait_exit(self, index: int, timeout: float = SYNC_TIMEOUT) -> int:
        """Wait until node `index` exits by itself; its exit code."""
        node = self.nodes[index]
        wait_until(lambda: not node.running, timeout, lambda: self.describe(f"{node.name} exiting"))
        assert node.process is not None
        code = node.process.wait()
        node.pid = None
        return code

    def small_market(self, seed: str, per_merchant: int) -> tuple[MarketLoad, int, dict[str, Any]]:
        """The two-validator modules' load: a market with `per_merchant` catalog entries per
        merchant, payments and orders through fulfilment, then blocks past a snapshot height;
        (the load, the head, the newest snapshot both validators offer)."""
        validators = [self.node(0), self.node(1)]
        load = self.market(seed=seed)
        load.open_market(validators)
        load.stock_catalog(validators, per_merchant=per_merchant)
        load.payments(validators, per_buyer=5)
        load.place_orders(validators, per_buyer=4)
        load.fulfil(validators)
        head = self.advance_past_snapshot()
        snapshot = self.wait_common_snapshot([0, 1], at_least=2, height=head - head % self.snapshot_interval)
        return load, head, snapshot

    def advance_past_snapshot(self) -> int:
        """Make blocks (one transfer each) until the head is past a snapshot height: at least
        one snapshot exists and a joiner has blocks to block-sync after it; the head."""
        while True:
            head = self.wait_same_height(range(self.manifest.validators))
            if head > self.snapshot_interval and head % self.snapshot_interval:
                return head
            self.wait_for_tx(self.transfer("faucet", "alice", 1), range(self.manifest.validators))

    # --- snapshots and progress -------------------------------------------------------------

    @staticmethod
    def snapshots(node: NodeHandle) -> list[dict[str, Any]]:
        """`GET /snapshots` of `node` (newest first)."""
        body = node.get_ok("/snapshots")
        assert isinstance(body, dict) and isinstance(body.get("snapshots"), list), body
        return body["snapshots"]

    def wait_common_snapshot(self, nodes: Iterable[int], at_least: int = 2, height: int = 1) -> dict[str, Any]:
        """Wait until at least `at_least` of `nodes` offer the same snapshot at or above
        `height`; the newest such (one `/snapshots` entry)."""
        selected = [self.nodes[index] for index in nodes]

        def common() -> dict[str, Any] | None:
            offers: dict[tuple[int, int], list[dict[str, Any]]] = {}
            for node in selected:
                for entry in self.snapshots(node):
                    offers.setdefault((entry["height"], entry["chunk_depth"]), []).append(entry)
            shared = [entries[0] for key, entries in offers.items() if len(entries) >= at_least and key[0] >= height]
            return max(shared, key=lambda entry: entry["height"]) if shared else None

        return wait_until(common, self.timeout, lambda: self.describe(
            f"a snapshot ≥ {height} on {at_least} of {[node.name for node in selected]}: "
            f"{ {node.name: self.snapshots(node) for node in selected} }"))

    def wait_state_synced(self, index: int, height: int, timeout: float = SYNC_TIMEOUT) -> list[dict[str, Any]]:
        """Wait until joiner `index` is done with state sync and at `height` or above; every
        `/status` it answered meanwhile (for the progress checks)."""
        node = self.nodes[index]
        seen: list[dict[str, Any]] = []

        def synced() -> bool:
            if not node.running:
                raise AssertionError(self.describe(f"{node.name} exited during state sync"))
            status = node.try_status()
            if status is None:
                return False
            seen.append(status)
            return status.get("syncing") != "state" and status["height"] >= height and "chunks" not in status

        wait_until(synced, timeout, lambda: self.describe(f"{node.name} state-synced to ≥ {height} "
                                                          f"(last status {seen[-1:]})"))
        return seen

    def metric(self, node: NodeHandle, name: str) -> float | None:
        """The value of an unlabelled metric of `node`'s `/metrics`, None when absent."""
        status, body = node.get("/metrics")
        assert status == 200, (status, body)
        text = body.decode() if isinstance(body, bytes) else str(body)
        for line in text.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def penalties(self, node: NodeHandle, offender: NodeHandle) -> list[str]:
        """The lines of `node`'s log where it charged `offender` (R32 scoring: "peer X loses")
        or banned it."""
        text = node.log_path.read_text(errors="replace")
        offender_id = offender.node_id
        return [line for line in text.splitlines()
                if offender_id in line and ("loses" in line or "banning" in line)]

    # --- agreement ---------------------------------------------------------------------

    def assert_blocks_agree(self, joiner: NodeHandle, others: Sequence[NodeHandle], first: int, last: int) -> None:
        """Blocks `first` … `last` have the same hash on the joiner and on each of `others`."""
        for height in range(first, last + 1):
            mine = joiner.get_ok(f"/blocks/{height}")["hash"]
            for other in others:
                theirs = other.get_ok(f"/blocks/{height}")["hash"]
                assert mine == theirs, f"block {height}: {joiner.name} has {mine}, {other.name} has {theirs}"

    def assert_pruned_below(self, joiner: NodeHandle, snapshot_height: int) -> None:
        """Blocks at or below the snapshot answer 410 `pruned` on the joiner (R40), never a
        wrong or empty answer; the next block is there."""
        for height in sorted({1, max(1, snapshot_height // 2), snapshot_height}):
            status, body = joiner.get(f"/blocks/{height}")
            assert status == 410 and body["error"]["code"] == "pruned", (height, status, body)
            assert body["error"]["message"], body

    def assert_same_objects(self, joiner: NodeHandle, reference: NodeHandle, load: MarketLoad, every: int = 1) -> int:
        """The joiner and `reference`, at the same height and state root, answer the same JSON
        for every `every`-th account, shop, listing, order and item the load touched, and the
        same sets for list reads; returns that height."""
        height = self.wait_same_height([joiner.index, reference.index])
        roots = {node.name: node.status()["state_root"] for node in (joiner, reference)}
        assert len(set(roots.values())) == 1, f"state roots differ at height {height}: {roots}"
        paths = [f"/accounts/{address.hex()}" for address in load.accounts()]
        paths += [f"/accounts/{self.address(name).hex()}" for name in self.keys]
        paths += [f"/shops/{shop.hex()}" for shop in load.shops]
        paths += [f"/listings/{listing.hex()}" for listing in [*load.listings, *load.catalog[::7]]]
        paths += [f"/orders/{order.id.hex()}" for order in load.orders]
        paths += [f"/items/{urllib.parse.quote(item, safe='')}" for item in load.items]
        for path in paths[::every]:
            mine, theirs = joiner.get_ok(path), reference.get_ok(path)
            assert mine == theirs, f"{path}: {joiner.name} {mine!r} != {reference.name} {theirs!r}"
        lists = ["/shops?limit=100", "/listings?q=tea&limit=100", "/listings?q=cups&limit=100",
                 f"/orders?buyer={load.buyers[0].address.hex()}&limit=100",
                 f"/orders?merchant={load.merchants[0].address.hex()}&limit=100",
                 f"/orders?merchant={load.merchants[1].address.hex()}&state=completed&limit=100"]
        for path in lists:
            mine, theirs = _listed(joiner.get_ok(path)), _listed(reference.get_ok(path))
            assert mine, f"{path}: nothing listed on {joiner.name}"
            assert mine == theirs, f"{path}: {joiner.name} lists {mine} != {reference.name} {theirs}"
        assert self.wait_same_height([joiner.index, reference.index]) == height, "the chain moved during the reads"
        return height

    def assert_proofs_verify(self, joiner: NodeHandle, reference: NodeHandle, load: MarketLoad, height: int) -> None:
        """State proofs served by the joiner verify (R36) against header `height` verified by
        the light client (R37) from the genesis, through the joiner's own `/light/changes`
        and blocks, and through `reference`'s."""
        genesis = self.genesis_document
        assert genesis is not None
        mine, theirs = NodeClient(joiner.url), NodeClient(reference.url)
        header, _ = fetch_verified_header(theirs, genesis, height)
        for address in [load.buyers[0].address, load.merchants[0].address, load.payees[0]]:
            verified = verify_account(mine, genesis, address, height)
            assert verified.value is not None and verified.height == height
            proof = StateProof.from_json(joiner.get_ok(f"/accounts/{address.hex()}/proof?height={height}"))
            verify_state_proof(proof, account_key(address), height, header.header.state_root)
        for order in load.orders[:3]:
            verified = verify_order(mine, genesis, order.id, height)
            assert verified.value is not None
            proof = StateProof.from_json(joiner.get_ok(f"/orders/{order.id.hex()}/proof?height={height}"))
            verify_state_proof(proof, order_key(order.id), height, header.header.state_root)
        assert joiner.get_ok("/light/changes?after=0&limit=32") == reference.get_ok("/light/changes?after=0&limit=32")


def _listed(body: Any) -> list[str]:
    """The objects of a list answer, canonical JSON sorted (their order may differ, see the
    module docstring)."""
    assert isinstance(body, dict) and body.get("next") is None, f"a list of more than one page: {body!r}"[:300]
    items = next(value for key, value in body.items() if isinstance(value, list))
    return sorted(json.dumps(item, sort_keys=True) for item in items)


@dataclass
class MarketNetwork:
    """A module's shared two-validator network (`StateSyncTestnet.small_market`) and what its load did."""

    net: StateSyncTestnet
    """Two validators with snapshots on."""
    load: MarketLoad
    """The market played through them."""
    head: int
    """The height the chain rests at (no load runs during the cases)."""
    base: int
    """The newest snapshot height both validators offer."""
    chunks: int
    """Its number of chunks."""
