"""marketchain's user-side package: what runs on a user's machine, never in a node.

It is also the Python SDK for merchants' and buyers' own scripts (docs/sdk.md): build
a payload, sign it locally, send it and wait for its receipt, in a few lines.

    from client import NodeClient, load_key, payloads, send_and_wait

    client = NodeClient("http://127.0.0.1:26657")
    alice = load_key("net/accounts/alice.json")
    receipt = send_and_wait(client, alice, "shop_create", payloads.shop_create("Tea House", 500))
    shop_id = bytes.fromhex(receipt["hash"])          # the id of what it created (R9)

Modules: `node_client` (HTTP API), `payloads` (one builder per transaction type, §4),
`transactions` (build, sign, send, wait), `keystore` (key files), `sealing` (shipping
addresses sealed to a key, R13; digital goods sealed to the buyer, R41), `delivery` (digital
goods sealed to the buyer proven by the signed order, opened from the merchant's signed
delivery, R41), `verification` (light-client proof checks),
`light_client` (R37: a header verified from the genesis file alone), `state_verification`
(R36 state proofs checked against such a header: `verify_account`, `verify_order`, …),
`formatting`, `progress`, `testnet`, `devnet`, and `commands` (the CLI's groups).
`client` never imports `node`: it talks to nodes over HTTP and starts them as processes.
"""

from __future__ import annotations

from client import payloads
from client.delivery import DeliveryError, open_delivery, seal_delivery, verify_delivery
from client.formatting import format_amount, parse_amount
from client.keystore import Keystore, KeystoreError
from client.light_client import LightClientError, VerifiedHeader, verify_header
from client.money import AmbiguousAmount, parse_money, render_money_message
from client.node_client import DEFAULT_NODE_URL, ClientError, NodeClient
from client.payloads import PayloadError
from client.sealing import MAX_CONTENT_BYTES, SealError, open_sealed, seal_content, seal_for
from client.state_verification import (
    StateVerificationFailed,
    VerifiedState,
    verify_account,
    verify_item,
    verify_listing,
    verify_order,
    verify_shop,
    verify_state_key,
)
from client.transactions import TransactionFailed, build_transaction, load_key, send, send_and_wait
from client.verification import (
    VerificationFailed,
    read_genesis_file,
    verify_order_placement,
    verify_transaction,
)
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.schema import check_payload

__all__ = [
    "DEFAULT_NODE_URL",
    "MAX_CONTENT_BYTES",
    "AmbiguousAmount",
    "ClientError",
    "DeliveryError",
    "KeyPair",
    "Keystore",
    "KeystoreError",
    "LightClientError",
    "NodeClient",
    "PayloadError",
    "RuleError",
    "SealError",
    "StateVerificationFailed",
    "Transaction",
    "TransactionFailed",
    "VerificationFailed",
    "VerifiedHeader",
    "VerifiedState",
    "build_transaction",
    "check_payload",
    "format_amount",
    "load_key",
    "open_delivery",
    "open_sealed",
    "parse_amount",
    "parse_money",
    "payloads",
    "read_genesis_file",
    "render_money_message",
    "seal_content",
    "seal_delivery",
    "seal_for",
    "send",
    "send_and_wait",
    "sign_transaction",
    "verify_account",
    "verify_delivery",
    "verify_header",
    "verify_item",
    "verify_listing",
    "verify_order",
    "verify_order_placement",
    "verify_shop",
    "verify_state_key",
    "verify_transaction",
]
"""The SDK's public names; each is documented where it is defined."""
