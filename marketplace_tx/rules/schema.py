"""Payload schemas of every transaction type, declared in one place (PROTOCOL §4, R10).

A schema lists each payload field with its type and bounds. `check_payload` enforces
it at admission and again before execution: a missing required key, an unknown key,
a wrong type or a value out of bounds is `invalid_field`, with the field named.
String bounds count UTF-8 bytes (R1); an empty optional list must be omitted (R1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from marketplace_tx.chain.roles import ROLES
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.primitives.limits import INT64_MAX, INT64_MIN, UINT64_MAX

MIN_DELIVERY_BYTES = 48
"""Shortest `order_deliver.content`: a libsodium sealed box of one byte or more is 48+ bytes (R41)."""
MAX_DELIVERY_BYTES = 4096
"""Longest `order_deliver.content` (R41)."""

SHIPMENT_STATUSES = ("picked_up", "in_transit", "out_for_delivery", "delivered", "exception")
"""The values of `shipment_update.status`."""

RESERVED_ITEM_EVENT_KINDS = ("registered", "transfer", "listed", "sold")
"""Item history kinds only the chain itself writes (R22)."""

ITEM_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class FieldSpec:
    """One payload field: its wire type and bounds."""

    kind: str
    """One of `bin32`, `bin`, `str`, `uint`, `int`, `bool`, `list`."""
    required: bool = True
    """Whether the key must be present."""
    minimum: int = 0
    """Least value (`uint`, `int`) or least UTF-8/byte length (`str`, `bin`) or item count (`list`)."""
    maximum: int | None = None
    """Greatest value, length or item count; `None` means the type's own limit."""
    item: FieldSpec | None = None
    """For lists: the spec every item must satisfy."""
    choices: tuple[str, ...] | None = None
    """For strings: the only values allowed."""
    pattern: re.Pattern[str] | None = None
    """For strings: a regular expression the whole value must match."""
    excluded: tuple[str, ...] = ()
    """For strings: values that are not allowed."""


def bin32(required: bool = True) -> FieldSpec:
    """A 32-byte binary value (ids, addresses, hashes)."""
    return FieldSpec("bin32", required)


def binary(maximum: int, required: bool = True, minimum: int = 0) -> FieldSpec:
    """Binary data of `minimum`..`maximum` bytes."""
    return FieldSpec("bin", required, minimum, maximum)


def text(maximum: int, minimum: int = 0, required: bool = True, **extra: Any) -> FieldSpec:
    """A UTF-8 string of `minimum`..`maximum` bytes."""
    return FieldSpec("str", required, minimum, maximum, **extra)


def uint(minimum: int = 0, maximum: int = UINT64_MAX, required: bool = True) -> FieldSpec:
    """An unsigned integer within bounds."""
    return FieldSpec("uint", required, minimum, maximum)


def signed_int(required: bool = True) -> FieldSpec:
    """A signed 64-bit integer."""
    return FieldSpec("int", required, INT64_MIN, INT64_MAX)


def boolean(required: bool = True) -> FieldSpec:
    """A msgpack boolean."""
    return FieldSpec("bool", required)


def list_of(item: FieldSpec, maximum: int, required: bool = False) -> FieldSpec:
    """A list of up to `maximum` items, each satisfying `item`."""
    return FieldSpec("list", required, 0, maximum, item=item)


def choice(*values: str) -> FieldSpec:
    """A string that must be one of `values`."""
    return FieldSpec("str", True, 0, 64, choices=values)


def item_id(required: bool = True) -> FieldSpec:
    """A unique item's id: 1..64 characters of `[A-Za-z0-9._:-]` (§4)."""
    return FieldSpec("str", required, 1, 64, pattern=ITEM_ID_PATTERN)


@dataclass(frozen=True)
class PayloadSchema:
    """The schema of one transaction type's payload."""

    fields: dict[str, FieldSpec]
    """Every allowed key and its spec."""
    needs_one_of: tuple[str, ...] = ()
    """For updates: at least one of these optional keys must be present."""


_SHOP_FIELDS = {
    "name": text(64, 1, required=False),
    "description": text(1000, required=False),
    "points_bps": uint(0, 10000, required=False),
    "max_redeem_bps": uint(0, 10000, required=False),
    "arbiters": list_of(bin32(), 8),
}

SCHEMAS: dict[str, PayloadSchema] = {
    # Accounts and governance
    "transfer": PayloadSchema({"to": bin32(), "amount": uint(1), "memo": text(256, required=False)}),
    "role_grant": PayloadSchema({"account": bin32(), "role": choice(*ROLES), "evidence_hash": bin32()}),
    "role_revoke": PayloadSchema({"account": bin32(), "role": choice(*ROLES)}),
    "validator_vote": PayloadSchema({"action": choice("add", "remove"), "validator": bin32()}),
    # Shops and listings
    "shop_create": PayloadSchema(
        {
            **_SHOP_FIELDS,
            "name": text(64, 1),
            "points_bps": uint(0, 10000),
            "max_redeem_bps": uint(0, 10000),
        }
    ),
    "shop_update": PayloadSchema(
        {"shop_id": bin32(), **_SHOP_FIELDS, "open": boolean(required=False)},
        needs_one_of=("name", "description", "points_bps", "max_redeem_bps", "arbiters", "open"),
    ),
    "listing_create": PayloadSchema(
        {
            "shop_id": bin32(),
            "title": text(128, 1),
            "description": text(2000, required=False),
            "price": uint(1),
            "stock": uint(),
            "item_ids": list_of(item_id(), 100),
            "tags": list_of(text(32), 8),
            "metadata_hash": bin32(required=False),
            "digital": boolean(required=False),
        }
    ),
    "listing_update": PayloadSchema(
        {
            "listing_id": bin32(),
            "price": uint(1, required=False),
            "stock_delta": signed_int(required=False),
            "active": boolean(required=False),
            "title": text(128, 1, required=False),
            "description": text(2000, required=False),
            "tags": list_of(text(32), 8),
        },
        needs_one_of=("price", "stock_delta", "active", "title", "description", "tags"),
    ),
    # Orders, escrow, logistics, after-sales
    "order_place": PayloadSchema(
        {
            "listing_id": bin32(),
            "quantity": uint(1),
            "max_unit_price": uint(),
            "shipping": binary(1024),
            "arbiter": bin32(required=False),
            "redeem_points": uint(required=False),
        }
    ),
    "order_accept": PayloadSchema({"order_id": bin32()}),
    "order_reject": PayloadSchema({"order_id": bin32(), "reason": text(256)}),
    "order_cancel": PayloadSchema({"order_id": bin32()}),
    "order_ship": PayloadSchema(
        {
            "order_id": bin32(),
            "carrier": bin32(),
            "tracking": text(64),
            "shipping_for_carrier": binary(1024, required=False),
        }
    ),
    "order_deliver": PayloadSchema(
        {"order_id": bin32(), "content": binary(MAX_DELIVERY_BYTES, minimum=MIN_DELIVERY_BYTES)}
    ),
    "shipment_update": PayloadSchema(
        {
            "order_id": bin32(),
            "status": choice(*SHIPMENT_STATUSES),
            "location": text(128),
            "note": text(256, required=False),
        }
    ),
    "order_confirm": PayloadSchema({"order_id": bin32()}),
    "return_request": PayloadSchema({"order_id": bin32(), "reason": text(256)}),
    "order_refund": PayloadSchema({"order_id": bin32(), "amount": uint(1)}),
    "dispute_open": PayloadSchema({"order_id": bin32(), "reason": text(256)}),
    "dispute_resolve": PayloadSchema(
        {"order_id": bin32(), "buyer_amount": uint(), "ruling": text(512)}
    ),
    "review_submit": PayloadSchema(
        {"order_id": bin32(), "rating": uint(1, 5), "text": text(1000, required=False)}
    ),
    "review_reply": PayloadSchema({"order_id": bin32(), "text": text(1000)}),
    # Supply chain
    "item_register": PayloadSchema(
        {"item_id": item_id(), "description": text(256), "metadata_hash": bin32(required=False)}
    ),
    "item_event": PayloadSchema(
        {
            "item_id": item_id(),
            "kind": text(32, 1, excluded=RESERVED_ITEM_EVENT_KINDS),
            "location": text(128),
            "data_hash": bin32(required=False),
            "note": text(256, required=False),
        }
    ),
    "item_transfer": PayloadSchema(
        {"item_id": item_id(), "to": bin32(), "custody_only": boolean()}
    ),
}
"""The payload schema of every transaction type of PROTOCOL §4."""


def _invalid(field: str, message: str) -> RuleError:
    return RuleError("invalid_field", f"payload.{field}: {message}")


def check_payload(tx_type: str, payload: Any) -> None:
    """Raise `RuleError("invalid_field")` unless `payload` satisfies the schema of `tx_type`."""
    schema = SCHEMAS[tx_type]
    if not isinstance(payload, dict):
        raise RuleError("invalid_field", "payload: must be a map")
    for key in payload:
        if key not in schema.fields:
            raise _invalid(key, "unknown field")
    for name, spec in schema.fields.items():
        if name not in payload:
            if spec.required:
                raise _invalid(name, "required field is missing")
            continue
        _check_value(name, spec, payload[name])
    if schema.needs_one_of and not any(name in payload for name in schema.needs_one_of):
        raise RuleError(
            "invalid_field", f"payload: give at least one of {', '.join(schema.needs_one_of)}"
        )


def _check_value(name: str, spec: FieldSpec, value: Any) -> None:
    kind = spec.kind
    if kind in ("uint", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(name, "must be an integer")
        maximum = spec.maximum if spec.maximum is not None else UINT64_MAX
        if not spec.minimum <= value <= maximum:
            raise _invalid(name, f"must be between {spec.minimum} and {maximum}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _invalid(name, "must be a boolean")
    elif kind == "bin32":
        if not isinstance(value, bytes) or len(value) != 32:
            raise _invalid(name, "must be 32 bytes")
    elif kind == "bin":
        if not isinstance(value, bytes):
            raise _invalid(name, "must be binary")
        if spec.maximum is not None and len(value) > spec.maximum:
            raise _invalid(name, f"must be at most {spec.maximum} bytes")
        if spec.minimum and len(value) < spec.minimum:
            raise _invalid(name, f"must be at least {spec.minimum} bytes")
    elif kind == "str":
        _check_text(name, spec, value)
    elif kind == "list":
        if not isinstance(value, list):
            raise _invalid(name, "must be a list")
        if not value:
            raise _invalid(name, "an empty optional list must be omitted")
        if spec.maximum is not None and len(value) > spec.maximum:
            raise _invalid(name, f"must have at most {spec.maximum} items")
        assert spec.item is not None
        for position, item in enumerate(value):
            _check_value(f"{name}[{position}]", spec.item, item)
    else:  # pragma: no cover - the table above uses only the kinds handled here
        raise AssertionError(kind)


def _check_text(name: str, spec: FieldSpec, value: Any) -> None:
    if not isinstance(value, str):
        raise _invalid(name, "must be text")
    try:
        length = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _invalid(name, "must be valid UTF-8") from None
    if length < spec.minimum or (spec.maximum is not None and length > spec.maximum):
        raise _invalid(name, f"must be {spec.minimum}..{spec.maximum} UTF-8 bytes")
    if spec.choices is not None and value not in spec.choices:
        raise _invalid(name, f"must be one of {', '.join(spec.choices)}")
    if spec.pattern is not None and not spec.pattern.fullmatch(value):
        raise _invalid(name, "may hold only letters, digits and . _ : -")
    if value in spec.excluded:
        raise _invalid(name, f"{value!r} is reserved for the chain itself")


def payload_from_json(tx_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """Turn a JSON payload (bytes as hex) into its msgpack form using the schema.

    Unknown keys are kept as they are, so `check_payload` reports them.
    """
    schema = SCHEMAS[tx_type]
    converted: dict[str, Any] = {}
    for name, value in values.items():
        spec = schema.fields.get(name)
        converted[name] = _value_from_json(spec, value, name) if spec else value
    return converted


def _value_from_json(spec: FieldSpec, value: Any, name: str) -> Any:
    if spec.kind in ("bin32", "bin") and isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise _invalid(name, "must be hex") from None
    if spec.kind == "list" and isinstance(value, list) and spec.item is not None:
        return [_value_from_json(spec.item, item, name) for item in value]
    return value
