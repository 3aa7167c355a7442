"""The e2e checks of a testnet, as a mixin of `Testnet`: waits on heights and
transactions, identical blocks, transactions final everywhere, conservation.

Every read goes through `NodeHandle.get`, a good client (429 `Retry-After` honoured),
and blocks are read a page at a time (`GET /blocks?before=&limit=100`), not one
request per block.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.http_client import POLITE_PATIENCE_S, http_post
from tests.e2e.harness.manifest import Manifest
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.harness.waiting import wait_until as poll_until

DEFAULT_TIMEOUT = 90.0
"""Deadline of every wait: generous, the machine is small and shared."""

BLOCK_PAGE = 100
"""Blocks asked for per `GET /blocks` page (the API's largest page)."""


def wait_until(predicate: Any, timeout: float = DEFAULT_TIMEOUT, message: Any = "condition",
               interval: float = 0.1) -> Any:
    """`waiting.wait_until` with the testnet's slower polling (0.1 s growing to 0.5 s:
    several nodes share two cores). The only sleeps of the harness are these polls."""
    return poll_until(predicate, timeout, message, interval, max_interval=0.5)


class TestnetChecks:
    """What a `Testnet` can be asked about: its nodes' state, its transactions, the e2e checks."""

    __test__ = False  # not a pytest test class

    nodes: list[NodeHandle]
    """Validators first (node0 …), then full nodes in the order added."""
    manifest: Manifest
    """What was started."""
    timeout: float
    """Deadline of every wait."""
    keys: dict[str, KeyPair]
    """The funded dev accounts, by name."""
    genesis: dict[str, Any]
    """node0's genesis.json."""

    # --- looking ----------------------------------------------------------------------

    @property
    def running_nodes(self) -> list[NodeHandle]:
        """The nodes whose process lives."""
        return [node for node in self.nodes if node.running]

    @property
    def available_nodes(self) -> list[NodeHandle]:
        """The nodes whose process lives and is not paused."""
        return [node for node in list(self.nodes) if node.available]

    def _select(self, nodes: Iterable[int] | None) -> list[NodeHandle]:
        return self.running_nodes if nodes is None else [self.nodes[i] for i in nodes]

    def describe(self, what: str) -> str:
        """`what`, then every node's state and log tail: a failure message."""
        lines = [what]
        for node in self.nodes:
            status = node.try_status() if node.available else None
            summary = "down" if not node.running else "paused" if node.paused else "not answering"
            if status is not None:
                summary = (f"height={status['height']} peers={status['peers']} syncing={status['syncing']} "
                           f"consensus={status['consensus']} mempool={status['mempool_size']}")
            lines.append(f"--- {node.name} pid={node.pid} {summary}\n{node.log_tail()}")
        return "\n".join(lines)

    def heights(self, nodes: Iterable[int] | None = None) -> dict[str, int]:
        """Height of each selected node (default: every running node)."""
        return {node.name: node.height() for node in self._select(nodes)}

    def wait_connected(self, nodes: Iterable[int] | None = None) -> None:
        """Wait until every selected validator sees all the other running validators."""
        selected = self._select(nodes)
        running_validators = sum(1 for node in self.nodes if node.validator and node.running)

        def connected() -> bool:
            for node in selected:
                status = node.try_status()
                wanted = running_validators - 1 if node.validator else 1
                if status is None or status["peers"] < wanted:
                    return False
            return True

        wait_until(connected, self.timeout, lambda: self.describe("nodes connected"))

    def wait_for_height(self, height: int, nodes: Iterable[int] | None = None) -> None:
        """Wait until every selected node is at `height` or above."""
        selected = self._select(nodes)

        def reached() -> bool:
            statuses = [node.try_status() for node in selected]
            return all(status is not None and status["height"] >= height for status in statuses)

        wait_until(reached, self.timeout, lambda: self.describe(f"height {height} on {[n.name for n in selected]}"))

    def wait_same_height(self, nodes: Iterable[int] | None = None) -> int:
        """Wait until the selected nodes agree on the latest height and have empty mempools."""
        selected = self._select(nodes)

        def agreed() -> tuple[int] | None:  # a tuple: height 0 is an answer too
            statuses = [node.try_status() for node in selected]
            if any(status is None for status in statuses):
                return None
            heights = {status["height"] for status in statuses}  # type: ignore[index]
            idle = all(status["mempool_size"] == 0 for status in statuses)  # type: ignore[index]
            return (heights.pop(),) if len(heights) == 1 and idle else None

        return wait_until(agreed, self.timeout, lambda: self.describe("same height, empty mempools"))[0]

    def wait_idle(self, nodes: Iterable[int] | None = None) -> int:
        """Wait until the selected nodes are idle (R29) at one height, twice in a row:
        same height, empty mempools, the next height not started. Returns the height."""
        selected = self._select(nodes)
        seen: list[int] = []

        def idle() -> tuple[int] | None:  # a tuple: height 0 is an answer too
            statuses = [node.try_status() for node in selected]
            if any(status is None for status in statuses):
                return None
            heights = {status["height"] for status in statuses}  # type: ignore[index]
            quiet = all(status["mempool_size"] == 0 and not status["consensus"]["started"]  # type: ignore[index]
                        for status in statuses)
            height = heights.pop() if len(heights) == 1 and quiet else None
            seen.append(-1 if height is None else height)
            return (height,) if height is not None and seen[-2:] == [height, height] else None

        return wait_until(idle, self.timeout, lambda: self.describe("an idle network"), interval=0.3)[0]

    # --- transactions -----------------------------------------------------------------

    def address(self, who: str) -> bytes:
        """The address of a dev account by name, or of a hex address."""
        return self.keys[who].address if who in self.keys else bytes.fromhex(who)

    def transfer(self, sender: str, recipient: str, amount: int, node: int = 0, memo: str | None = None) -> str:
        """Sign a transfer locally with a dev key and POST it to node `node`; its hash (hex)."""
        key = self.keys[sender]
        target = self.nodes[node]
        status = target.status()
        nonce = target.get_ok(f"/accounts/{key.address.hex()}")["pending_nonce"]
        payload: dict[str, Any] = {"to": self.address(recipient), "amount": amount}
        if memo is not None:
            payload["memo"] = memo
        tx = sign_transaction(key, status["chain_id"], "transfer", payload, nonce, status["min_fee"])
        code, body = http_post(target.url + "/txs", tx.raw, patience_s=POLITE_PATIENCE_S)
        if code != 202:
            raise AssertionError(f"{target.name}: POST /txs answered {code}: {body!r}")
        assert body["hash"] == tx.hash.hex()
        return body["hash"]

    def tx_on(self, node: NodeHandle, tx_hash: str) -> dict[str, Any] | None:
        """The transaction's view on `node`, or None when it does not know it / is down."""
        try:
            code, body = node.get(f"/txs/{tx_hash}")
        except OSError:
            return None
        if code == 404:
            return None
        if code != 200:
            raise AssertionError(f"{node.name}: GET /txs/{tx_hash} answered {code}: {body!r}")
        return body

    def is_final(self, tx_hash: str, node: NodeHandle) -> bool:
        """True when `node` holds the transaction in a final block."""
        view = self.tx_on(node, tx_hash)
        return view is not None and view["status"] == "committed"

    def wait_for_tx(self, tx_hash: str, nodes: Iterable[int] | None = None) -> dict[str, Any]:
        """Wait until the transaction is final on every selected node, in the same block."""
        selected = self._select(nodes)

        def final_everywhere() -> list[dict[str, Any]] | None:
            views = [self.tx_on(node, tx_hash) for node in selected]
            if all(view is not None and view["status"] == "committed" for view in views):
                return views  # type: ignore[return-value]
            return None

        views = wait_until(final_everywhere, self.timeout,
                           lambda: self.describe(f"tx {tx_hash} final on {[n.name for n in selected]}"))
        placements = {(view["height"], view["block_hash"]) for view in views}
        assert len(placements) == 1, f"tx {tx_hash} final in different blocks: {placements}"
        assert all(view["result"]["ok"] for view in views), views[0]
        return views[0]

    # --- checks -----------------------------------------------------------------------

    def blocks(self, node: NodeHandle, up_to: int, page_size: int = BLOCK_PAGE) -> list[dict[str, Any]]:
        """The views of blocks 1 … up_to on `node`, lowest first, read `page_size` at a time
        (`GET /blocks?before=&limit=`, newest first)."""
        views: list[dict[str, Any]] = []
        before = up_to + 1
        while before > 1:
            page = node.get_ok(f"/blocks?before={before}&limit={page_size}")["blocks"]
            assert page, f"{node.name}: GET /blocks?before={before} answered no block"
            views.extend(page)
            before = page[-1]["height"]
        views.reverse()
        assert [view["height"] for view in views] == list(range(1, up_to + 1)), f"{node.name}: blocks not 1 … {up_to}"
        return views

    def block_hashes(self, node: NodeHandle, up_to: int) -> list[str]:
        """Hashes of blocks 1 … up_to on `node`."""
        return [view["hash"] for view in self.blocks(node, up_to)]

    def assert_identical_blocks(self, nodes: Iterable[int] | None = None, up_to: int | None = None) -> int:
        """Every selected node holds the same blocks 1 … up_to (default: the lowest height); returns it.

        Also checks each block's own commit carries precommits of more than 2/3 of its set.
        """
        selected = self._select(nodes)
        height = min(node.height() for node in selected) if up_to is None else up_to
        probe = selected[0]
        probe_blocks = self.blocks(probe, height)
        reference = [view["hash"] for view in probe_blocks]
        for node in selected[1:]:
            hashes = self.block_hashes(node, height)
            for at, (mine, theirs) in enumerate(zip(reference, hashes, strict=True), start=1):
                assert mine == theirs, f"block {at}: {selected[0].name} has {mine}, {node.name} has {theirs}"
        for at, block in enumerate(probe_blocks, start=1):
            members = {entry["address"] for entry in probe.get_ok(f"/validators?height={at}")["validators"]}
            signers = {entry["validator"] for entry in block["commit"]["signatures"]}
            assert signers <= members and 3 * len(signers) > 2 * len(members), (
                f"block {at}: commit of {len(signers)} of {len(members)} validators")
        return height

    def wait_identical_blocks(self, nodes: Iterable[int] | None = None, height: int | None = None) -> int:
        """Wait until the selected nodes reach `height` (default: the highest among them), then
        check they hold identical blocks up to it; returns it."""
        selected = self._select(nodes)
        if height is None:
            height = max(node.height() for node in selected)
        self.wait_for_height(height, [node.index for node in selected])
        return self.assert_identical_blocks([node.index for node in selected], height)

    def genesis_supply(self) -> int:
        """Sum of every genesis balance."""
        return sum(account["balance"] for account in self.genesis["accounts"])

    def supply_on(self, node: NodeHandle) -> int:
        """Sum of the balances of every genesis account on `node`, read at one height."""

        def consistent_read() -> int | None:
            before = node.height()
            total = sum(node.get_ok(f"/accounts/{account['address']}")["balance"]
                        for account in self.genesis["accounts"])
            return total if node.height() == before else None

        return wait_until(consistent_read, self.timeout, f"a read of {node.name}'s balances at one height")

    def assert_conservation(self, nodes: Iterable[int] | None = None) -> None:
        """Transfers and fees move money between genesis accounts; none is made or lost."""
        expected = self.genesis_supply()
        for node in self._select(nodes):
            assert self.supply_on(node) == expected, f"{node.name}: money supply changed"

    def log_problems(self) -> dict[str, list[str]]:
        """Suspicious node.log lines of every node that has any."""
        return {node.name: problems for node in self.nodes if (problems := node.log_problems())}
