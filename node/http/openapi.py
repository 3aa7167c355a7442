"""The OpenAPI 3.1 document of the HTTP API, `GET /openapi.json` (PROTOCOL §10).

The document is data: `OPERATIONS` lists every route the node serves with its
parameters and responses, and `document()` assembles it with the shared schemas.
`ROUTES` (method, path template) is what `build_app` checks its router against at
start-up (`check_routes`): a route that is served but not documented, or documented but
not served, stops the node before it answers anything. The schemas of the state records
(shop, listing, order, item, reputation, header) are derived from their dataclasses in
`marketplace_tx`, the single source of their fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiohttp import web

from marketplace_tx.chain.block import Header
from marketplace_tx.primitives.errors import ADMISSION_CODES, RULE_CODES
from marketplace_tx.rules import schema as payload_schemas
from marketplace_tx.rules.items import Item
from marketplace_tx.rules.listings import Listing
from marketplace_tx.rules.order_records import ORDER_STATES, Order
from marketplace_tx.rules.reputation import Reputation
from marketplace_tx.rules.schema import ITEM_ID_PATTERN
from marketplace_tx.rules.shops import Shop
from node.http.costs import STATE_HEIGHT_COST, STATE_KEY_COST, STATE_PROOF_COST
from node.http.params import (
    CURSOR_PATTERN,
    DEFAULT_PAGE,
    DEFAULT_STATS_DAYS,
    HEIGHT_MAX,
    MAX_PAGE,
    MAX_QUERY_BYTES,
    MAX_QUERY_WORDS,
    MAX_STATS_DAYS,
    MAX_TAG_BYTES,
    UINT64_MAX,
)
from node.http.state_proofs import DEFAULT_CHANGES, MAX_CHANGES, MAX_KEY_BYTES

API_ERROR_CODES = (
    "invalid_query",
    "not_found",
    "pruned",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "rate_limited",
    "request_timeout",
    "bad_request",
    "internal",
    "syncing",
)
"""Codes of the API itself (node/http/errors.py), beside those of R12."""
STATUS_REQUIRED = ("chain_id", "genesis_hash", "height", "latest_block_hash", "latest_block_time", "state_root",
                   "node_id", "moniker", "validator", "peers", "syncing", "sync", "consensus", "p2p",
                   "mempool_size", "min_fee", "version", "params")
"""`/status` fields always present (`chunks` and `state_sync` only during state sync)."""
ERROR_CODES = tuple(dict.fromkeys(ADMISSION_CODES + RULE_CODES + API_ERROR_CODES))
"""Every `error.code` a response may carry."""


def ref(name: str) -> dict[str, str]:
    """A reference to a shared schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Any], required: tuple[str, ...] | None = None, **extra: Any) -> dict[str, Any]:
    """An object schema; every property is required unless `required` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required), **extra}


def page(plural: str, item: dict[str, Any]) -> dict[str, Any]:
    """`{<plural>: [item], next: cursor or null}` (PROTOCOL §10)."""
    return obj({plural: {"type": "array", "items": item}, "next": ref("Cursor")})


INTEGER = {"type": "integer", "minimum": 0}
PRUNED_BELOW = {"type": "integer", "minimum": 2,
                "description": "On the last page of a node that lacks older blocks (pruned or state-synced, "
                               "R40): the oldest height it keeps; older entries are not listed."}
SIGNED = {"type": "integer"}
STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
HEX = ref("Hex")
HEX32 = ref("Hex32")
ANY_OBJECT = {"type": "object"}
DEFAULT_MAX_TX_BYTES = 16384
"""The genesis default of `max_tx_bytes` (R10); the document states the default."""
DEFAULT_MAX_BATCH_TXS = 10_000
"""The default of `[http] max_batch_txs`."""
TX_HEX = {"type": "string", "minLength": 2, "maxLength": 2 * DEFAULT_MAX_TX_BYTES, "pattern": "^([0-9a-fA-F]{2})+$",
          "description": "A signed transaction's canonical bytes (R1, R2) in hex, either case: non-empty, even "
                         "length, at most `max_tx_bytes` bytes (genesis parameter, default 16384). A transaction "
                         "that does not pass admission (R10) is 400 with its R12 code."}

TX_TYPE = {"type": "string", "enum": list(payload_schemas.SCHEMAS), "description": "A transaction type (§4)."}
"""Every transaction type the rules know (`order_deliver` since v2, R41)."""
DIGITAL = {"type": "boolean", "description": "True if it sells (or buys) digital goods, delivered on chain "
                                             "by `order_deliver` sealed to the buyer (R41); false for parcels."}
DELIVERY = nullable({"type": "string", "pattern": "^([0-9a-f]{2})*$", "minLength": 2 * payload_schemas.MIN_DELIVERY_BYTES,
                     "maxLength": 2 * payload_schemas.MAX_DELIVERY_BYTES,
                     "description": "A digital order's content as `order_deliver` left it (R41): a sealed box "
                                    "that only the buyer's key opens, as hex; null until delivered."})

_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "bytes": HEX,
    "int": SIGNED,
    "str": STRING,
    "bool": BOOLEAN,
    "tuple[bytes, ...]": {"type": "array", "items": HEX},
    "tuple[str, ...]": {"type": "array", "items": STRING},
    "tuple[dict[str, Any], ...]": {"type": "array", "items": ANY_OBJECT},
    "dict[str, Any]": ANY_OBJECT,
}


def record_properties(record_type: type) -> dict[str, Any]:
    """JSON schemas of a record dataclass's fields as the API shows them (bytes as hex,
    unset optional fields as null)."""
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(record_type):
        type_name = str(field.type)
        optional = type_name.endswith(" | None")
        schema = _FIELD_TYPES[type_name.removesuffix(" | None")]
        properties[field.name] = nullable(schema) if optional else schema
    return properties


# --- shared schemas ----------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    reputation = record_properties(Reputation)
    shop_stats = {name: INTEGER for name in ("orders_placed", "orders_completed", "units_sold", "revenue",
                                              "orders_refunded", "refund_rate_bps", "dispute_rate_bps")}
    day = {"orders_placed": INTEGER, "orders_completed": INTEGER, "revenue": INTEGER, "refunds": INTEGER,
           "orders_refunded": INTEGER}
    signature = obj({"signature": HEX, "validator": HEX32})
    commit = obj({"block_hash": HEX32, "height": INTEGER, "round": INTEGER,
                  "signatures": {"type": "array", "items": signature}})
    return {
        "Error": obj({"error": obj({"code": {"type": "string", "enum": list(ERROR_CODES)}, "message": STRING},
                                   additionalProperties=False)},
                     additionalProperties=False,
                     description="Every error: a stable code (R12 or the API's own) and a message naming the field."),
        "Hex": {"type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "Bytes, lowercase hex (R5)."},
        "Hex32": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "A 32-byte id or address."},
        "Cursor": nullable({"type": "string", "pattern": CURSOR_PATTERN.replace("a-fA-F", "a-f"),
                            "description": "Opaque; pass as `cursor` for the next page."}),
        "Status": obj({
            "chain_id": STRING, "genesis_hash": HEX32, "height": INTEGER,
            "latest_block_hash": nullable(HEX32), "latest_block_time": nullable(INTEGER), "state_root": HEX32,
            "node_id": HEX32, "moniker": STRING, "validator": nullable(HEX32), "peers": INTEGER,
            "syncing": {"anyOf": [BOOLEAN, {"type": "string", "enum": ["state"]}],
                        "description": "A boolean (block sync, R30), or \"state\" while a snapshot is restored (R39)."},
            "sync": obj({"height": INTEGER, "target": INTEGER, "syncing": BOOLEAN}),
            "chunks": {"type": "string", "pattern": "^[0-9]+/[0-9]+$",
                       "description": "While `syncing` is \"state\": chunks of the snapshot written / in all."},
            "state_sync": {"type": "object", "description": "While `syncing` is \"state\": phase, height, "
                                                            "chunks_done, chunks_total, offering_peers."},
            "consensus": obj({"height": INTEGER, "round": INTEGER, "step": STRING, "started": BOOLEAN}),
            "p2p": STRING, "mempool_size": INTEGER, "min_fee": INTEGER, "version": STRING,
            "params": {"type": "object", "description": "The chain parameters of genesis (PROTOCOL §9), as in genesis.json: what a client checks a transaction against before signing."},
        }, required=STATUS_REQUIRED),
        "TxBody": obj({"tx": TX_HEX}, description="Or the canonical bytes as `application/msgpack`."),
        "TxBatchBody": obj({"txs": {"type": "array", "items": TX_HEX, "maxItems": DEFAULT_MAX_BATCH_TXS,
                                    "description": "At most `[http] max_batch_txs` (default 10000) items."}},
                           description="Or a canonical msgpack array of bin as `application/msgpack`."),
        "TxAccepted": obj({"hash": HEX32}),
        "TxBatchResults": obj({"results": {"type": "array", "items": {"oneOf": [ref("TxAccepted"), ref("Error")]}}}),
        "Receipt": obj({"ok": BOOLEAN, "code": STRING, "message": STRING, "events": {"type": "array", "items": ANY_OBJECT}},
                       required=("ok", "message", "events")),
        "Tx": obj({
            "hash": HEX32, "status": {"type": "string", "enum": ["pending", "committed"]}, "type": TX_TYPE,
            "sender": HEX32, "nonce": INTEGER, "fee": INTEGER, "chain_id": STRING, "payload": ANY_OBJECT, "sig": HEX,
            "height": INTEGER, "index": INTEGER, "block_hash": HEX32, "time": INTEGER, "result": ref("Receipt"),
        }, required=("hash", "status", "type", "sender", "nonce", "fee", "chain_id", "payload", "sig")),
        "TxProof": obj({"hash": HEX32, "height": INTEGER, "index": INTEGER, "total": INTEGER, "tx_root": HEX32,
                        "block_hash": HEX32, "path": {"type": "array", "items": HEX32}}),
        "Header": obj(record_properties(Header)),
        "Commit": commit,
        "Block": obj({"hash": HEX32, "height": INTEGER, "header": ref("Header"),
                      "txs": {"type": "array", "items": HEX32}, "tx_count": INTEGER, "last_commit": ANY_OBJECT,
                      "evidence": {"type": "array", "items": ANY_OBJECT}, "commit": nullable(ref("Commit"))}),
        "BlockList": obj({"blocks": {"type": "array", "items": ref("Block")},
                          "next": nullable({"type": "integer", "minimum": 2,
                                            "description": "Pass as `before` for the next page. A page ends "
                                                           "early once its blocks hold 10,000 transaction "
                                                           "ids."}),
                          "pruned_below": PRUNED_BELOW}, required=("blocks", "next")),
        "Reputation": obj(reputation),
        "Account": obj({"id": HEX32, "address": HEX32, "balance": INTEGER, "nonce": INTEGER,
                        "pending_nonce": INTEGER, "roles": {"type": "array", "items": STRING},
                        "role_grants": ANY_OBJECT,
                        "points": {"type": "object", "additionalProperties": INTEGER},
                        "reputation": nullable(ref("Reputation"))}),
        "AccountTxList": obj({"txs": {"type": "array", "items": obj(
                                  {"hash": HEX32, "height": INTEGER, "index": INTEGER, "type": TX_TYPE,
                                   "sender": HEX32, "ok": BOOLEAN, "code": STRING},
                                  required=("hash", "height", "index", "type", "sender", "ok"))},
                              "next": ref("Cursor"), "pruned_below": PRUNED_BELOW}, required=("txs", "next")),
        "ShopStats": obj(shop_stats),
        "Shop": obj({"id": HEX32, **record_properties(Shop), "reputation": ref("Reputation"),
                     "stats": ref("ShopStats"), "listing_count": INTEGER, "active_listing_count": INTEGER,
                     "listing_counts_complete": {
                         "type": "boolean", "description": "false: the counts stopped at the scan budget "
                                                           "(2,000 index entries) and are lower bounds."}}),
        "ShopList": page("shops", ref("Shop")),
        "ShopAnalytics": obj({
            "id": HEX32, "days": INTEGER, "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"}, "stats": ref("ShopStats"), "window": obj(day),
            "daily": {"type": "array", "items": obj({"day": {"type": "string", "format": "date"}, **day})},
            "complete": BOOLEAN,
        }),
        "Review": obj({"order_id": HEX32, "buyer": HEX32, "rating": INTEGER, "text": STRING, "time": INTEGER,
                       "height": INTEGER, "reply": obj({"text": STRING, "time": INTEGER, "height": INTEGER})},
                      required=("order_id", "buyer", "rating", "time", "height")),
        "ReviewList": page("reviews", ref("Review")),
        "Listing": obj({"id": HEX32, **record_properties(Listing), "digital": DIGITAL, "shop_name": nullable(STRING)}),
        "ListingList": page("listings", ref("Listing")),
        "Order": obj({"id": HEX32, **record_properties(Order), "digital": DIGITAL, "delivery": DELIVERY,
                      "review_deadline": nullable(SIGNED)}),
        "OrderList": page("orders", ref("Order")),
        "Item": obj({"id": STRING, **record_properties(Item), "history": {"type": "array", "items": ANY_OBJECT}}),
        "Validators": obj({
            "height": INTEGER, "validators": {"type": "array", "items": obj({"address": HEX32})},
            "validators_hash": HEX32, "proposer": nullable(HEX32),
            "scheduled": {"type": "array", "items": obj({"height": INTEGER, "validators": {"type": "array", "items": HEX32}})},
            "pending_votes": {"type": "array", "items": obj({"action": STRING, "validator": HEX32,
                                                             "voters": {"type": "array", "items": HEX32}})},
            "evidence": {"type": "array", "items": ANY_OBJECT},
        }),
        "StateProof": obj({
            "height": INTEGER, "key": HEX, "value": nullable(HEX),
            "leaf": nullable(obj({"path": HEX32, "value_hash": HEX32})),
            "siblings": {"type": "array", "items": HEX32, "maxItems": 256}, "state_root": HEX32,
        }, description="The R36 proof of `key` at `height`, for inclusion (`value` not null) or absence; "
                       "`state_root` is header `height`'s, for convenience only: check the proof against "
                       "a header you verified yourself (R37)."),
        "LightChanges": obj({
            "changes": {"type": "array", "items": obj({
                "height": INTEGER, "header": HEX, "commit": ref("Commit"),
                "next_validators": {"type": "array", "items": HEX32}})},
            "next": nullable({"type": "integer", "minimum": 1,
                              "description": "Pass as `after` for the next page; null on the last."}),
        }, description="Validator-set change points (R37): headers whose next_validators_hash differs from "
                       "their validators_hash, oldest first, each with its commit and the next set."),
        "Genesis": obj({
            "accounts": {"type": "array", "items": obj({"address": HEX32, "balance": INTEGER,
                                                        "roles": {"type": "array", "items": STRING}})},
            "chain_id": STRING, "genesis_time": INTEGER, "params": ANY_OBJECT,
            "validators": {"type": "array", "items": HEX32},
        }, description="The genesis document (R33); its hash is `/status` `genesis_hash`."),
        "BlockEvent": obj({"height": INTEGER, "hash": HEX32, "time": INTEGER, "tx_count": INTEGER, "proposer": HEX32},
                          description="`event: block`, sent only on an unfiltered stream."),
        "TxEvent": obj({"hash": HEX32, "height": INTEGER, "index": INTEGER, "type": TX_TYPE, "sender": HEX32,
                        "ok": BOOLEAN, "code": STRING},
                       required=("hash", "height", "index", "type", "sender", "ok"),
                       description="`event: tx`: a transaction's result in a final block."),
        "OrderEvent": obj({"order_id": HEX32, "from": nullable({"type": "string", "enum": list(ORDER_STATES)}),
                           "to": {"type": "string", "enum": list(ORDER_STATES)},
                           "by": {"type": "string", "enum": [*payload_schemas.SCHEMAS, "deadline"]}, "height": INTEGER,
                           "time": INTEGER, "tx": nullable(HEX32), "buyer": HEX32, "merchant": HEX32},
                          required=("order_id", "from", "to", "by", "height", "time", "tx"),
                          description="`event: order`: a state change; `by` is the tx type or `deadline` (R15)."),
    }


# --- parameters and responses ----------------------------------------------------------


def path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A required path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


HEX32_PARAMETER = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "64 hex characters, either case."}
"""A 32-byte id, hash or address as a parameter (node/http/params.py: `parse_hex32`)."""
HEIGHT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": HEIGHT_MAX}
HASH = path_parameter("hash", HEX32_PARAMETER, "Transaction hash (R9).")
HEIGHT = path_parameter("height", HEIGHT_SCHEMA, "Block height.")
ID = path_parameter("id", HEX32_PARAMETER, "Shop, listing or order id (the creating transaction's hash, R9).")
ADDRESS = path_parameter("address", HEX32_PARAMETER, "Account address (R5).")
ITEM_ID = path_parameter("id", {"type": "string", "pattern": f"^{ITEM_ID_PATTERN.pattern}$"}, "Item id (R22).")
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "Page size.")
CURSOR = query("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
               "The `next` of the previous page of the same list (opaque, 24 hex characters).")
PAGING = (LIMIT, CURSOR)
PRICE = {"type": "integer", "minimum": 0, "maximum": UINT64_MAX}
STATE_KEY = {"name": "key", "in": "query", "required": True,
             "schema": {"type": "string", "minLength": 2, "maxLength": 2 * MAX_KEY_BYTES,
                        "pattern": "^([0-9a-fA-F]{2})+$"},
             "description": f"The state key (R35) in hex, either case: 1..{MAX_KEY_BYTES} bytes."}
PROOF_HEIGHT = query("height", {"type": "integer", "minimum": 0, "maximum": HEIGHT_MAX},
                     "The height whose state to prove (default: the latest); at most the head, and within "
                     "the last `[storage] keep_state` heights (else 410 `pruned`). A proof costs "
                     f"{STATE_PROOF_COST:g} request unit, plus {STATE_HEIGHT_COST:g} per height below the "
                     f"head and {STATE_KEY_COST:g} per key changed since.")
PROOF_ERRORS = ("400", "404", "410")
"""A proof's errors: a parameter that does not parse, a height above the head, a pruned height."""
BOOLEAN_PARAMETER = {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"}
"""`true` or `false` (any case), or `1` or `0`."""

_ERROR_DESCRIPTIONS = {
    "400": "`invalid_query` (a path or query parameter that does not parse, or a query parameter given "
           "empty), `malformed` or an R12 code",
    "404": "`not_found`: no such object, or no such route",
    "405": "`method_not_allowed`",
    "413": "`body_too_large`",
    "408": "`request_timeout`: the body was not sent within `[http] body_timeout_s`; the connection is closed",
    "415": "`unsupported_media_type`",
    "410": "`pruned`: older than the node keeps (`[storage] keep_state` for state proofs, `keep_blocks` for "
           "blocks, commits and transactions) or, after state sync, never had (R40); the message says what "
           "it keeps",
    "429": "`rate_limited`: the client address spent its budget of request units (with `Retry-After`), "
           "or a connection or event stream cap",
    "500": "`internal`: a node bug only",
    "503": "`syncing`: the node is joining by state sync (R39) and has no state to read yet; the message "
           "gives the progress (with `Retry-After`)",
}


def _error_responses() -> dict[str, Any]:
    return {
        status: {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
        for status, description in _ERROR_DESCRIPTIONS.items()
    }


def json_body(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    """A JSON response."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@dataclass(frozen=True)
class Operation:
    """One route of the API."""

    method: str
    """HTTP method, upper case."""
    path: str
    """Path template, as registered with aiohttp (`/txs/{hash}`)."""
    operation_id: str
    """Unique operation name."""
    summary: str
    """What it does."""
    tag: str
    """Group in the document."""
    success: dict[str, Any]
    """The success response object."""
    parameters: tuple[dict[str, Any], ...] = ()
    """Path and query parameters."""
    errors: tuple[str, ...] = ("400", "404")
    """Error statuses beside 405, 429 and 500, which every route may answer."""
    status: str = "200"
    """The success status."""
    body: dict[str, Any] | None = None
    """The request body object, for POST."""

    def to_openapi(self) -> dict[str, Any]:
        """The operation object."""
        responses = {self.status: self.success}
        responses.update({status: {"$ref": f"#/components/responses/E{status}"}
                          for status in (*self.errors, "405", "429", "500", "503")})
        operation: dict[str, Any] = {"operationId": self.operation_id, "summary": self.summary,
                                     "tags": [self.tag], "responses": responses}
        if self.parameters:
            operation["parameters"] = list(self.parameters)
        if self.body is not None:
            operation["requestBody"] = self.body
        return operation


MSGPACK_MEDIA_TYPES = ("application/msgpack", "application/x-msgpack", "application/octet-stream")
"""Content types a transaction body may take as raw canonical msgpack."""


def _tx_body(schema: str) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "content": {"application/json": {"schema": ref(schema)},
                                          **{media: binary for media in MSGPACK_MEDIA_TYPES}}}


EVENTS_DESCRIPTION = (
    "Server-sent events (`text/event-stream`) of what becomes final: `block`, `tx` and `order` "
    "messages with `id: height:sequence` and a JSON `data` line (schemas BlockEvent, TxEvent, "
    "OrderEvent). Send `Last-Event-ID` to resume within the last 1000 events (`event: gap` if some "
    "are gone). A comment every 15 s keeps the stream open; a client that falls 1000 events behind "
    "gets `event: dropped` and the stream ends. At most 256 streams at once, 8 per client address "
    "(`[http] max_event_streams_per_ip`); one more is 429 `rate_limited`."
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/status", "getStatus", "Chain, height, node, peers, sync and consensus state.", "node",
              json_body(ref("Status")), errors=()),
    Operation("POST", "/txs", "submitTx", "Admit one signed transaction (R10).", "transactions",
              json_body(ref("TxAccepted"), "Admitted"), errors=("400", "408", "413", "415"), status="202",
              body=_tx_body("TxBody")),
    Operation("POST", "/txs/batch", "submitTxBatch", "Admit many signed transactions; a result per tx, in order.",
              "transactions", json_body(ref("TxBatchResults")), errors=("400", "408", "413", "415"),
              body=_tx_body("TxBatchBody")),
    Operation("GET", "/txs/{hash}", "getTx", "A pending or committed transaction with its result.", "transactions",
              json_body(ref("Tx")), (HASH,), errors=("400", "404", "410")),
    Operation("GET", "/txs/{hash}/proof", "getTxProof", "Merkle inclusion path of a committed transaction (R7).",
              "transactions", json_body(ref("TxProof")), (HASH,), errors=("400", "404", "410")),
    Operation("GET", "/blocks", "listBlocks", "Final blocks, newest first.", "blocks", json_body(ref("BlockList")),
              (query("before", HEIGHT_SCHEMA, "Only heights below this."), LIMIT),
              errors=("400", "410")),
    Operation("GET", "/blocks/latest", "getLatestBlock", "The last final block.", "blocks", json_body(ref("Block")),
              errors=("404", "410")),
    Operation("GET", "/blocks/{height}", "getBlock", "A final block: header, tx hashes, commits.", "blocks",
              json_body(ref("Block")), (HEIGHT,), errors=("400", "404", "410")),
    Operation("GET", "/blocks/{height}/raw", "getBlockRaw", "The canonical block bytes (R24).", "blocks",
              {"description": "OK", "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}},
              (HEIGHT,), errors=("400", "404", "410")),
    Operation("GET", "/blocks/{height}/commit", "getBlockCommit", "The precommits that finalized a block.", "blocks",
              json_body(ref("Commit")), (HEIGHT,), errors=("400", "404", "410")),
    Operation("GET", "/accounts/{address}", "getAccount", "Balance, nonce, roles, points and merchant reputation.",
              "accounts", json_body(ref("Account")), (ADDRESS,), errors=("400",)),
    Operation("GET", "/accounts/{address}/txs", "listAccountTxs",
              "Transactions the account sends, is named in, or that act on its orders; newest first.", "accounts",
              json_body(ref("AccountTxList")), (ADDRESS, *PAGING), errors=("400",)),
    Operation("GET", "/shops", "listShops", "Shops, oldest first.", "marketplace", json_body(ref("ShopList")),
              (query("owner", HEX32_PARAMETER, "Only this owner's shops."), *PAGING), errors=("400",)),
    Operation("GET", "/shops/{id}", "getShop", "A shop with its reputation and stats.", "marketplace",
              json_body(ref("Shop")), (ID,)),
    Operation("GET", "/shops/{id}/reviews", "listShopReviews", "Reviews with replies, newest first.", "marketplace",
              json_body(ref("ReviewList")), (ID, *PAGING)),
    Operation("GET", "/shops/{id}/stats", "getShopStats",
              "Merchant analytics: the shop's stats and a daily series of the last `days` UTC days.", "marketplace",
              json_body(ref("ShopAnalytics")),
              (ID, query("days", {"type": "integer", "minimum": 1, "maximum": MAX_STATS_DAYS,
                                  "default": DEFAULT_STATS_DAYS}, "Days in the series."))),
    Operation("GET", "/listings", "listListings", "Search listings across every shop, newest first.", "marketplace",
              json_body(ref("ListingList")),
              (query("q", {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_BYTES},
                     f"Words that must all appear: at least one letter or digit, at most {MAX_QUERY_WORDS} distinct words and "
                     f"{MAX_QUERY_BYTES} UTF-8 bytes."),
               query("tag", {"type": "string", "minLength": 1, "maxLength": MAX_TAG_BYTES},
                     f"A tag, ignoring case; at most {MAX_TAG_BYTES} UTF-8 bytes."),
               query("shop", HEX32_PARAMETER, "Only this shop."),
               query("min_price", PRICE, "Lowest unit price."),
               query("max_price", PRICE, "Highest unit price; not below `min_price`."),
               query("active", BOOLEAN_PARAMETER, "Only active or inactive listings."), *PAGING),
              errors=("400",)),
    Operation("GET", "/listings/{id}", "getListing", "A listing.", "marketplace", json_body(ref("Listing")), (ID,)),
    Operation("GET", "/orders", "listOrders", "Orders, newest first; every filter given must match.", "marketplace",
              json_body(ref("OrderList")),
              (query("buyer", HEX32_PARAMETER, "Buyer address."), query("merchant", HEX32_PARAMETER, "Merchant address."),
               query("shop", HEX32_PARAMETER, "Shop id."),
               query("state", {"type": "string", "enum": list(ORDER_STATES)}, "State."),
               *PAGING),
              errors=("400",)),
    Operation("GET", "/orders/{id}", "getOrder", "An order with state, escrow, deadlines and history (R18).",
              "marketplace", json_body(ref("Order")), (ID,)),
    Operation("GET", "/items/{id}", "getItem", "A unique item: owner, custodian, full history (R22).", "marketplace",
              json_body(ref("Item")), (ITEM_ID,)),
    Operation("GET", "/state/proof", "getStateProof", "The R36 proof of a state key, inclusion or absence (R38).",
              "proofs", json_body(ref("StateProof")), (STATE_KEY, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/accounts/{address}/proof", "getAccountProof",
              "The R36 proof of an account's balance and nonce (`a` ‖ address).", "proofs",
              json_body(ref("StateProof")), (ADDRESS, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/orders/{id}/proof", "getOrderProof", "The R36 proof of an order (`o` ‖ id).", "proofs",
              json_body(ref("StateProof")), (ID, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/shops/{id}/proof", "getShopProof", "The R36 proof of a shop (`s` ‖ id).", "proofs",
              json_body(ref("StateProof")), (ID, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/listings/{id}/proof", "getListingProof", "The R36 proof of a listing (`l` ‖ id).", "proofs",
              json_body(ref("StateProof")), (ID, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/items/{id}/proof", "getItemProof", "The R36 proof of an item (`i` ‖ id, UTF-8).", "proofs",
              json_body(ref("StateProof")), (ITEM_ID, PROOF_HEIGHT), errors=PROOF_ERRORS),
    Operation("GET", "/light/changes", "getLightChanges",
              "Validator-set change points above `after`, oldest first, for light clients (R37).", "proofs",
              json_body(ref("LightChanges")),
              (query("after", {"type": "integer", "minimum": 0, "maximum": HEIGHT_MAX, "default": 0},
                     "Only change points above this height."),
               query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_CHANGES, "default": DEFAULT_CHANGES},
                     "Page size (0.1 request unit per row).")),
              errors=("400",)),
    Operation("GET", "/genesis", "getGenesis", "The genesis document (R33), the light client's trust anchor.",
              "node", json_body(ref("Genesis")), errors=()),
    Operation("GET", "/validators", "getValidators", "The validator set at a height, pending votes, evidence.",
              "node", json_body(ref("Validators")),
              (query("height", HEIGHT_SCHEMA, "At most the next block's height (the default)."),), errors=("400",)),
    Operation("GET", "/events", "streamEvents", EVENTS_DESCRIPTION, "node",
              {"description": "An endless event stream.",
               "content": {"text/event-stream": {"schema": {"type": "string"}}}},
              (query("account", HEX32_PARAMETER, "Only tx and order events this address takes part in (no block events)."),
               query("order", HEX32_PARAMETER, "Only this order's events and the transactions acting on it (no block events)."),
               query("last_event_id", {"type": "string", "minLength": 1}, "Same as the Last-Event-ID header."),
               {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STRING,
                "description": "Resume after this event id (`height:sequence`)."}),
              errors=("400",)),
    Operation("GET", "/metrics", "getMetrics", "Prometheus text format (docs/api.md lists the metrics).", "node",
              {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}, errors=()),
    Operation("GET", "/snapshots", "listSnapshots", "The state snapshots this node serves, newest first (R39).",
              "snapshots", json_body(obj({"snapshots": {"type": "array", "items": obj(
                  {"height": INTEGER, "chunk_depth": INTEGER, "chunks": INTEGER})}})), errors=()),
    Operation("GET", "/snapshots/{height}/manifest", "getSnapshotManifest",
              "The canonical manifest of a snapshot (R39); one request unit per 64 KiB.", "snapshots",
              {"description": "OK", "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}},
              (path_parameter("height", {"type": "integer", "minimum": 1, "maximum": HEIGHT_MAX}, "Snapshot height."),)),
    Operation("GET", "/snapshots/{height}/chunks/{index}", "getSnapshotChunk",
              "The canonical bytes of one chunk of a snapshot (R39); one request unit per 64 KiB.", "snapshots",
              {"description": "OK", "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}},
              (path_parameter("height", {"type": "integer", "minimum": 1, "maximum": HEIGHT_MAX}, "Snapshot height."),
               path_parameter("index", {"type": "integer", "minimum": 0, "maximum": 65535},
                              "Chunk index: the first chunk_depth bits of its keys' paths."))),
    Operation("GET", "/openapi.json", "getOpenApi", "This document.", "node",
              json_body({"type": "object"}), errors=()),
    Operation("GET", "/", "getExplorer", "The block explorer, a web page.", "explorer",
              {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}, errors=()),
    Operation("GET", "/static/{name}", "getExplorerFile", "A script, style sheet or image of the explorer.",
              "explorer",
              {"description": "OK", "content": {media: {"schema": {"type": "string"}}
                                                for media in ("text/javascript", "text/css", "image/svg+xml")}},
              (path_parameter("name", {"type": "string", "pattern": "^[^/.][^/]*$"}, "File name (.js, .css, .svg)."),),
              errors=("404",)),
)
"""Every route of the API."""

ROUTES: tuple[tuple[str, str], ...] = tuple((operation.method, operation.path) for operation in OPERATIONS)
"""(method, path template) of every route; `build_app` serves exactly these."""


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = operation.to_openapi()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "marketchain node API",
            "version": "1",
            "description": "Every marketchain node's HTTP API (PROTOCOL §10). Bytes are lowercase hex, amounts "
                           "integers in µMKT, times ms since the Unix epoch. Errors are "
                           '`{"error": {"code", "message"}}`.',
        },
        "tags": [{"name": name} for name in dict.fromkeys(operation.tag for operation in OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {f"E{status}": response for status, response in _error_responses().items()},
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as JSON bytes (built once)."""
    return json.dumps(document(), ensure_ascii=False, separators=(",", ":")).encode()


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route of an aiohttp application, HEAD aside."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def check_routes(app: web.Application) -> None:
    """Raise RuntimeError unless the application serves exactly the documented routes."""
    served, documented = served_routes(app), set(ROUTES)
    problems = [f"undocumented {method} {path}" for method, path in sorted(served - documented)]
    problems += [f"documented but not served {method} {path}" for method, path in sorted(documented - served)]
    if problems:
        raise RuntimeError("node/http/openapi.py is out of date: " + "; ".join(problems))


async def get_openapi(request: web.Request) -> web.Response:
    """`GET /openapi.json`."""
    return web.Response(body=document_bytes(), content_type="application/json")
