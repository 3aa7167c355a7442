"""Every payload schema of §4 (PROTOCOL R10): minimal payloads pass, required and unknown
keys are named, bounds are inclusive, JSON input converts by schema."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import SCHEMAS, FieldSpec, check_payload, payload_from_json

# --------------------------------------------------------------------------- every schema


def _minimal_value(spec: FieldSpec) -> Any:
    if spec.kind == "bin32":
        return b"\x01" * 32
    if spec.kind == "bin":
        return b"\x00" * spec.minimum
    if spec.kind in ("uint", "int"):
        return max(spec.minimum, 0) if spec.kind == "uint" else 0
    if spec.kind == "bool":
        return False
    if spec.kind == "str":
        if spec.choices:
            return spec.choices[0]
        return "a" * max(spec.minimum, 0)
    if spec.kind == "list":
        assert spec.item is not None
        return [_minimal_value(spec.item)]
    raise AssertionError(spec.kind)


def minimal_payload(tx_type: str) -> dict[str, Any]:
    schema = SCHEMAS[tx_type]
    payload = {name: _minimal_value(spec) for name, spec in schema.fields.items() if spec.required}
    if schema.needs_one_of:
        first = schema.needs_one_of[0]
        payload[first] = _minimal_value(schema.fields[first])
    return payload


def required_keys(tx_type: str) -> list[str]:
    return [name for name, spec in SCHEMAS[tx_type].fields.items() if spec.required]


def test_schemas_cover_protocol_section_4() -> None:
    assert set(SCHEMAS) == {
        "transfer", "role_grant", "role_revoke", "validator_vote",
        "shop_create", "shop_update", "listing_create", "listing_update",
        "order_place", "order_accept", "order_reject", "order_cancel", "order_ship",
        "order_deliver", "shipment_update", "order_confirm", "return_request", "order_refund",
        "dispute_open", "dispute_resolve", "review_submit", "review_reply",
        "item_register", "item_event", "item_transfer",
    }  # fmt: skip
    assert set(HANDLERS) <= set(SCHEMAS)


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_minimal_payload_passes(tx_type: str) -> None:
    check_payload(tx_type, minimal_payload(tx_type))


@pytest.mark.parametrize(
    ("tx_type", "key"),
    [(tx_type, name) for tx_type in sorted(SCHEMAS) for name in required_keys(tx_type)],
)
def test_dropping_a_required_key_names_it(tx_type: str, key: str) -> None:
    payload = minimal_payload(tx_type)
    del payload[key]
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, payload)
    assert error.value.code == "invalid_field"
    assert error.value.message.startswith(f"payload.{key}:")


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_unknown_key_is_named(tx_type: str) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, {**minimal_payload(tx_type), "zz_unknown": 1})
    assert error.value.code == "invalid_field"
    assert "payload.zz_unknown" in error.value.message


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_payload_must_be_a_map(tx_type: str) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, [])
    assert error.value.code == "invalid_field"


@pytest.mark.parametrize("tx_type", ["shop_update", "listing_update"])
def test_updates_need_at_least_one_change(tx_type: str) -> None:
    payload = minimal_payload(tx_type)
    for name in SCHEMAS[tx_type].needs_one_of:
        payload.pop(name, None)
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, payload)
    assert error.value.code == "invalid_field"


@pytest.mark.parametrize(
    ("tx_type", "field", "value"),
    [
        ("shop_create", "name", ""),
        ("shop_create", "name", "n" * 65),
        ("shop_create", "points_bps", 10001),
        ("shop_create", "arbiters", [b"\x01" * 32] * 9),
        ("shop_create", "arbiters", [b"\x01" * 31]),
        ("listing_create", "price", 0),
        ("listing_create", "item_ids", ["bad id"]),
        ("listing_create", "item_ids", ["a" * 65]),
        ("listing_create", "tags", ["t" * 33]),
        ("listing_update", "stock_delta", 2**63),
        ("order_place", "quantity", 0),
        ("order_place", "shipping", b"\x00" * 1025),
        ("order_place", "shipping", "text"),
        ("shipment_update", "status", "lost"),
        ("review_submit", "rating", 6),
        ("review_submit", "rating", 0),
        ("item_event", "kind", "sold"),
        ("item_event", "kind", "registered"),
        ("item_transfer", "custody_only", 1),
        ("validator_vote", "action", "promote"),
    ],
)
def test_bounds(tx_type: str, field: str, value: Any) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, {**minimal_payload(tx_type), field: value})
    assert error.value.code == "invalid_field"
    assert f"payload.{field}" in error.value.message


@pytest.mark.parametrize(
    ("tx_type", "field", "value"),
    [
        ("shop_create", "name", "n" * 64),
        ("shop_create", "points_bps", 10000),
        ("shop_create", "arbiters", [b"\x01" * 32] * 8),
        ("listing_create", "item_ids", ["Ab0._:-" * 9 + "x"]),
        ("listing_update", "stock_delta", -(2**63)),
        ("order_place", "shipping", b"\x00" * 1024),
        ("review_submit", "rating", 5),
        ("item_event", "kind", "inspected"),
    ],
)
def test_bounds_are_inclusive(tx_type: str, field: str, value: Any) -> None:
    check_payload(tx_type, {**minimal_payload(tx_type), field: value})


def test_payload_from_json_converts_hex_by_schema() -> None:
    converted = payload_from_json(
        "shop_create",
        {"name": "Tea", "points_bps": 1, "max_redeem_bps": 2, "arbiters": ["ab" * 32], "extra": "cd"},
    )
    assert converted == {
        "name": "Tea",
        "points_bps": 1,
        "max_redeem_bps": 2,
        "arbiters": [b"\xab" * 32],
        "extra": "cd",  # unknown keys are kept as they are, for check_payload to report
    }
    with pytest.raises(RuleError) as error:
        payload_from_json("transfer", {"to": "zz" * 32, "amount": 1})
    assert error.value.code == "invalid_field"
    assert "payload.to" in error.value.message
