"""The CLI's side of digital goods (R41) that needs no node: `tx order-deliver` refuses a
content file that is empty, missing or too large before reading any key, `listing-create
--digital` refuses unique items, `query order --output` needs `--decrypt`, and the human
views show a digital order's delivery by its size, never its content."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from client.commands import command_line
from client.formatting import listing_view, listings_table, order_view, orders_table
from client.sealing import MAX_CONTENT_BYTES

ORDER = "ab" * 32
main = command_line()
NOWHERE = "http://127.0.0.1:9"


def deliver(content_file: str, stdin: bytes | None = None) -> tuple[int, str]:
    """Exit code and output of `tx order-deliver` with a key file that does not exist."""
    result = CliRunner().invoke(main, ["tx", "order-deliver", "--order", ORDER, "--content-file", content_file,
                                       "--key", "/nonexistent/merchant.json", "--node", NOWHERE], input=stdin)
    return result.exit_code, result.output


def test_a_content_file_that_cannot_be_delivered_is_refused_first(tmp_path: Path) -> None:
    empty, large = tmp_path / "empty.txt", tmp_path / "large.bin"
    empty.write_bytes(b"")
    large.write_bytes(b"x" * (MAX_CONTENT_BYTES + 1))
    code, output = deliver(str(empty))
    assert code == 1 and "is empty: there is nothing to deliver" in output
    code, output = deliver(str(large))
    assert code == 1 and f"is {MAX_CONTENT_BYTES + 1} bytes; at most {MAX_CONTENT_BYTES} bytes" in output
    code, output = deliver("-", stdin=b"y" * (MAX_CONTENT_BYTES + 10))
    assert code == 1 and f"stdin is more than {MAX_CONTENT_BYTES} bytes" in output
    code, output = deliver(str(tmp_path / "missing.txt"))
    assert code == 1 and "cannot read" in output and "Traceback" not in output
    code, output = deliver("-", stdin=b"GIFT-1")  # fits: only now is the key read
    assert code == 1 and "key file /nonexistent/merchant.json does not exist" in output


def test_a_digital_listing_sells_no_unique_items_and_output_needs_decrypt() -> None:
    result = CliRunner().invoke(main, ["tx", "listing-create", "--shop", ORDER, "--title", "Gift card",
                                       "--price", "5MKT", "--item-id", "A", "--digital",
                                       "--key", "/nonexistent/merchant.json", "--node", NOWHERE])
    assert result.exit_code == 1 and "--digital: a digital listing cannot sell unique items" in result.output
    result = CliRunner().invoke(main, ["query", "order", ORDER, "--output", "code.txt", "--node", NOWHERE])
    assert result.exit_code == 1 and "--output and --genesis need --decrypt" in result.output


def test_views_show_the_delivery_by_size_never_its_content() -> None:
    sealed = "5e" * 80
    order = {"id": ORDER, "state": "delivered", "digital": True, "delivery": sealed, "shipping": "00" * 48,
             "history": [{"event": "order_deliver", "state": "delivered", "height": 7, "time": 1, "tx": "cd" * 32}]}
    shown = order_view(order)
    assert "delivered (sealed to the buyer, 80 bytes)" in shown and sealed not in shown
    assert "delivered (digital)" in shown and "order_deliver → delivered" in shown
    assert "not delivered yet" in order_view({**order, "state": "placed", "delivery": None})
    parcel = order_view({**order, "digital": False, "delivery": None})
    assert "delivery" not in parcel and "(digital)" not in parcel
    assert "delivered (digital)" in orders_table([order])
    listing = {"id": ORDER, "title": "Gift card 50", "digital": True, "price": 1, "active": True}
    assert "yes: delivered on chain, sealed to the buyer" in listing_view(listing)
    assert "Gift card 50 [digital]" in listings_table([listing])
    assert "[digital]" not in listings_table([{**listing, "digital": False}])
