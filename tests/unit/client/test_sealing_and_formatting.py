"""Sealed shipping addresses (`client.sealing`, R13) and the CLI's formatting of amounts,
counters and rates (`client.formatting`)."""

from __future__ import annotations

import pytest

from client.formatting import format_bps, format_value
from client.sealing import MAX_ADDRESS_BYTES, SealError, open_sealed, seal_for
from marketplace_tx.primitives.crypto import KeyPair

ADDRESS = "Erin Example, 12 Harbour Road, Qingdao 266000"


def test_sealed_address_opens_only_for_its_recipient() -> None:
    merchant, carrier, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    sealed = seal_for(merchant.address, ADDRESS.encode())
    assert ADDRESS.encode() not in sealed and len(sealed) == len(ADDRESS.encode()) + 48
    assert open_sealed(merchant, sealed) == ADDRESS.encode()
    resealed = seal_for(carrier.address, open_sealed(merchant, sealed))
    assert open_sealed(carrier, resealed) == ADDRESS.encode()
    for key, box in (
        (stranger, sealed),
        (carrier, sealed),
        (merchant, resealed),
        (merchant, b"short"),
    ):
        with pytest.raises(SealError, match="not sealed to"):
            open_sealed(key, box)
    assert seal_for(merchant.address, ADDRESS.encode()) != sealed, "an ephemeral key per box"


def test_seal_limits() -> None:
    merchant = KeyPair.generate()
    assert len(seal_for(merchant.address, b"x" * MAX_ADDRESS_BYTES)) == 1024
    with pytest.raises(SealError, match="at most"):
        seal_for(merchant.address, b"x" * (MAX_ADDRESS_BYTES + 1))
    with pytest.raises(SealError):
        seal_for(b"short", b"x")


def test_formatting_of_amounts_counters_and_rates() -> None:
    assert format_bps(500) == "5% (500 bps)" and format_bps(250) == "2.5% (250 bps)"
    assert format_value("escrow", 12_500_000) == "12.5 MKT (12500000 µMKT)"
    assert format_value("orders_refunded", 3) == "3"
    assert format_value("refund_rate_bps", 2000) == "20% (2000 bps)"
