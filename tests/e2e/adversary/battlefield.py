"""The shared testnet as the attacks see it, and the chain prepared for them.

`prepare_battlefield(net)` runs once per test module (and once per bench run), before
any attack: it fills one block with transfers carrying 256-character memos (the largest
block on chain, which `block_request` amplification asks for) and funds the attacker
accounts whose future-nonce transfers never become ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.adversary.attacker import ChainIdentity
from tests.e2e.harness.http_client import POLITE_PATIENCE_S, http_post, http_request
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.testnet_harness import Testnet

BIG_BLOCK_SENDERS = ("dave", "erin", "faucet")
"""Dev accounts that fill the big block (the honest load uses alice, bob and carol)."""

BIG_BLOCK_TXS_PER_SENDER = 34
"""Transfers of each of them in the big block (within the mempool's per-sender limits)."""

MEMO = "m" * 256
"""The longest memo a transfer may carry (marketplace_tx/rules/schema.py)."""

FUNDED_ATTACKERS = 8
"""Attacker accounts funded by the faucet."""

ATTACKER_FUNDS = 10_000_000
"""µMKT each attacker account gets: enough for 64 transfers' fees."""


@dataclass
class Battlefield:
    """The shared testnet as the attacks see it."""

    net: Testnet
    """The honest 4-validator testnet."""
    identity: ChainIdentity
    """Its chain id and genesis hash, for the attacker's hellos."""
    big_block_height: int
    """Height of the largest block on chain (the block_request amplifier)."""
    funded_keys: tuple[KeyPair, ...]
    """Attacker accounts the faucet funded, which never send their next nonce."""

    def node(self, index: int = 0) -> NodeHandle:
        """Honest node `index`."""
        return self.net.node(index)

    @property
    def validators(self) -> list[bytes]:
        """The genesis validators' addresses."""
        return [bytes.fromhex(address) for address in self.net.genesis["validators"]]


def prepare_battlefield(net: Testnet) -> Battlefield:
    """Fill one big block and fund the attacker accounts; wait until all of it is final."""
    node = net.node(0)
    chain_id = net.chain_id
    fee = node.status()["min_fee"]
    funded = tuple(KeyPair.generate() for _ in range(FUNDED_ATTACKERS))
    batches = []
    for sender in BIG_BLOCK_SENDERS:
        nonce = node.get_ok(f"/accounts/{net.address(sender).hex()}")["nonce"]
        key = net.keys[sender]
        payloads = [{"to": net.address("alice"), "amount": 1, "memo": MEMO}
                    for _ in range(BIG_BLOCK_TXS_PER_SENDER)]
        if sender == "faucet":
            payloads[:FUNDED_ATTACKERS] = [{"to": attacker.address, "amount": ATTACKER_FUNDS}
                                           for attacker in funded]
        batches.append([sign_transaction(key, chain_id, "transfer", payload, nonce + offset, fee)
                        for offset, payload in enumerate(payloads)])
    for batch in batches:
        status, body = http_post(node.url + "/txs/batch", codec.encode([tx.raw for tx in batch]),
                                 patience_s=POLITE_PATIENCE_S)
        assert status == 200, f"/txs/batch answered {status}: {body!r}"
    for batch in batches:
        net.wait_for_tx(batch[-1].hash.hex())
    return Battlefield(net, ChainIdentity.of_home(node.home), largest_block(node), funded)


def largest_block(node: NodeHandle) -> int:
    """The height of the largest block (canonical bytes) the node holds."""
    sizes = {}
    for height in range(1, node.height() + 1):
        response = http_request(f"{node.url}/blocks/{height}/raw", patience_s=POLITE_PATIENCE_S)
        assert response.status == 200, f"/blocks/{height}/raw answered {response.status}"
        sizes[height] = len(response.raw)
    return max(sizes, key=lambda height: sizes[height])
