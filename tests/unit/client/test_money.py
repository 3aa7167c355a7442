"""Money on the command line is always explicit (issue 12, point 1): units are required, a
bare number is refused with both readings, and the node's money messages are shown in MKT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands import command_line
from client.money import AmbiguousAmount, parse_money, render_money_message
from marketplace_tx.primitives.crypto import KeyPair

main = command_line()
"""The client's commands (no node-side command is needed here)."""


@pytest.mark.parametrize(("text", "micro"), [
    ("12MKT", 12_000_000), ("12.5 MKT", 12_500_000), ("1500µMKT", 1500), ("1500umkt", 1500), ("1500μMKT", 1500),
    ("0.01MKT", 10_000), ("1_000µMKT", 1000), ("0", 0), ("2 mkt", 2_000_000),
])
def test_amounts_with_a_unit_parse(text: str, micro: int) -> None:
    assert parse_money(text) == micro


def test_a_bare_number_is_refused_with_both_readings() -> None:
    with pytest.raises(AmbiguousAmount) as raised:
        parse_money("12")
    assert str(raised.value) == "12 is ambiguous: write 12MKT (12 MKT) or 12µMKT (0.000012 MKT)"
    with pytest.raises(AmbiguousAmount, match=r"12.5 has no unit: write 12.5MKT \(12.5 MKT\)"):
        parse_money("12.5")


@pytest.mark.parametrize("text", ["", "abc", "0.0000001MKT", "-3MKT", "5 btc", "1e6", "0.5µMKT"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money(text)


@pytest.mark.parametrize(("message", "shown"), [
    ("balance 499935 is below the 10000000 needed",
     "balance 0.499935 MKT (499935 µMKT) is below the 10 MKT (10000000 µMKT) needed"),
    ("fee: 1 is below min_fee 10", "fee: 0.000001 MKT (1 µMKT) is below min_fee 0.00001 MKT (10 µMKT)"),
    ("payload.max_unit_price: the price is now 12000000",
     "payload.max_unit_price: the price is now 12 MKT (12000000 µMKT)"),
    ("payload.buyer_amount: at most 11760000 after the arbiter fee",
     "payload.buyer_amount: at most 11.76 MKT (11760000 µMKT) after the arbiter fee"),
    ("payload.amount: the escrow holds only 5", "payload.amount: the escrow holds only 0.000005 MKT (5 µMKT)"),
    ("nonce: 9 is already pending for this sender", "nonce: 9 is already pending for this sender"),
])
def test_node_messages_about_money_are_shown_in_mkt(message: str, shown: str) -> None:
    assert render_money_message(message) == shown


@pytest.mark.parametrize("arguments", [
    ["transfer", "--to", "ab" * 32, "--amount", "5"],
    ["transfer", "--to", "ab" * 32, "--amount", "5MKT", "--fee", "10"],
    ["listing-create", "--shop", "ab" * 32, "--title", "Tea", "--price", "12", "--stock", "1"],
    ["listing-update", "--listing", "ab" * 32, "--price", "12"],
    ["order-place", "--listing", "ab" * 32, "--ship-to", "x", "--max-unit-price", "12"],
    ["order-refund", "--order", "ab" * 32, "--amount", "12"],
    ["dispute-resolve", "--order", "ab" * 32, "--buyer-amount", "12", "--ruling", "r"],
])
def test_every_money_option_refuses_a_bare_number_before_signing(tmp_path: Path, arguments: list[str]) -> None:
    key = tmp_path / "k.json"
    key.write_text(json.dumps({"address": KeyPair.generate().address.hex(), "secret_seed": "11" * 32}))
    result = CliRunner().invoke(main, ["tx", *arguments, "--key", str(key), "--node", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert "is ambiguous: write" in result.output and "µMKT" in result.output
    assert "unreachable" not in result.output


def test_query_price_filters_refuse_a_bare_number() -> None:
    result = CliRunner().invoke(main, ["query", "listings", "--max-price", "100", "--node", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "100 is ambiguous" in result.output


def test_a_receipt_shows_fee_amounts_and_failures_in_mkt(capsys: pytest.CaptureFixture[str]) -> None:
    from client.commands.sending import print_tx

    print_tx({"hash": "ab" * 32, "status": "committed", "type": "transfer", "sender": "cd" * 32, "nonce": 3,
              "fee": 10_000, "height": 7, "index": 0, "payload": {"to": "ef" * 32, "amount": 12_000_000},
              "result": {"ok": False, "code": "insufficient_funds",
                         "message": "balance 499935 is below the 12000000 needed",
                         "events": [{"type": "transfer", "amount": 5}]}})
    shown = capsys.readouterr().out
    assert "fee             0.01 MKT (10000 µMKT)" in shown
    assert "payload.amount  12 MKT (12000000 µMKT)" in shown
    assert "failed: insufficient_funds: balance 0.499935 MKT (499935 µMKT) is below the 12 MKT" in shown
    assert '"amount": "0.000005 MKT (5 µMKT)"' in shown


def test_history_details_show_rulings_in_mkt() -> None:
    from client.formatting import history_table

    table = history_table([{"event": "dispute_resolve", "state": "resolved", "time": 0, "height": 9, "tx": "ab",
                            "buyer_amount": 12_000_000, "arbiter_fee": 400_000, "merchant_amount": 7_600_000}])
    assert "arbiter_fee=0.4 MKT (400000 µMKT)" in table
    assert "buyer_amount=12 MKT (12000000 µMKT)" in table and "merchant_amount=7.6 MKT (7600000 µMKT)" in table
