"""The agent's codes (client/merchant/inventory.py): encrypted at rest, reserved in an fsynced
journal before use, replayed on reopen (a last journal line cut short by a crash is dropped),
released or used as the chain says. Argon2id runs at its weakest limits here (tests/fast_keys.py)."""

from __future__ import annotations

from pathlib import Path

import nacl.pwhash
import pytest

from client.merchant.inventory import MAX_CODE_BYTES, MAX_IMPORT_CODES, Inventory, parse_codes
from client.merchant.inventory_crypto import (
    InventoryError,
    create_inventory_key,
    open_inventory_key,
)

LISTING = bytes([3]) * 32
ORDER_A, ORDER_B, ORDER_C = bytes([10]) * 32, bytes([11]) * 32, bytes([12]) * 32
FAST = {"opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN, "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN}
PASSPHRASE = "correct horse battery"


def new_inventory(directory: Path, codes: list[str]) -> Inventory:
    key = create_inventory_key(directory, PASSPHRASE, **FAST)
    inventory = Inventory(directory, key)
    inventory.add_codes(LISTING, codes)
    return inventory


def reopen(directory: Path) -> Inventory:
    return Inventory(directory, open_inventory_key(directory, PASSPHRASE))


def counts(inventory: Inventory) -> tuple[int, int, int]:
    (row,) = inventory.counts()
    return row.free, row.reserved, row.used


def test_codes_are_encrypted_at_rest_and_only_counts_are_clear(tmp_path: Path) -> None:
    new_inventory(tmp_path, ["SECRET-ONE", "SECRET-TWO"])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path
    assert counts(Inventory(tmp_path)) == (2, 0, 0)  # no passphrase needed to count
    with pytest.raises(InventoryError, match="wrong passphrase"):
        open_inventory_key(tmp_path, "not the passphrase")
    with pytest.raises(InventoryError, match="at least 8"):
        create_inventory_key(tmp_path / "other", "short", **FAST)


def test_reserve_use_and_release_survive_a_reopen(tmp_path: Path) -> None:
    inventory = new_inventory(tmp_path, ["C1", "C2", "C3"])
    first = inventory.reserve(LISTING, ORDER_A, 2)
    assert first is not None and inventory.code_texts(first.listing, first.codes) == ["C1", "C2"]
    assert inventory.reserve(LISTING, ORDER_A, 2) is first  # the same codes again
    assert inventory.reserve(LISTING, ORDER_B, 2) is None  # one left: not enough
    inventory.mark_submitted(ORDER_A, "ab" * 32)
    second = reopen(tmp_path)
    assert second.reservation(ORDER_A).codes == first.codes and second.reservation(ORDER_A).tx == "ab" * 32
    assert second.pending() == [ORDER_A.hex()] and counts(second) == (1, 2, 0)
    second.mark_used(ORDER_A)
    third = second.reserve(LISTING, ORDER_B, 1)
    assert third is not None and second.code_texts(third.listing, third.codes) == ["C3"]
    second.release(ORDER_B)
    again = reopen(tmp_path)
    assert counts(again) == (1, 0, 2) and again.pending() == []
    reused = again.reserve(LISTING, ORDER_C, 1)
    assert reused is not None and again.code_texts(reused.listing, reused.codes) == ["C3"]
    again.release(ORDER_A)  # used codes never come back
    assert counts(reopen(tmp_path)) == (0, 1, 2)


def test_a_journal_line_cut_short_by_a_crash_is_dropped_and_appends_go_on(tmp_path: Path) -> None:
    inventory = new_inventory(tmp_path, ["C1", "C2"])
    inventory.reserve(LISTING, ORDER_A, 1)
    journal = tmp_path / "journal.jsonl"
    with open(journal, "ab") as handle:
        handle.write(b'{"codes":["000000:1"],"listing":"03')  # the reservation of ORDER_B, torn
    replayed = reopen(tmp_path)
    assert replayed.pending() == [ORDER_A.hex()] and counts(replayed) == (1, 1, 0)
    assert journal.read_bytes().endswith(b"\n")
    replayed.reserve(LISTING, ORDER_B, 1)
    assert sorted(reopen(tmp_path).pending()) == sorted([ORDER_A.hex(), ORDER_B.hex()])


def test_more_imports_add_codes_in_order(tmp_path: Path) -> None:
    inventory = new_inventory(tmp_path, ["A1"])
    inventory.add_codes(LISTING, ["B1", "B2"])
    reservation = inventory.reserve(LISTING, ORDER_A, 3)
    assert reservation is not None and inventory.code_texts(LISTING.hex(), reservation.codes) == ["A1", "B1", "B2"]


def test_codes_files_are_checked(tmp_path: Path) -> None:
    assert parse_codes(" a \n\n b\r\n") == ["a", "b"]
    with pytest.raises(InventoryError, match="line 3: this code is given twice"):
        parse_codes("a\nb\na\n")
    with pytest.raises(InventoryError, match=f"line 1: a code is at most {MAX_CODE_BYTES} bytes"):
        parse_codes("x" * (MAX_CODE_BYTES + 1))
    with pytest.raises(InventoryError, match="no codes"):
        parse_codes("\n \n")
    with pytest.raises(InventoryError, match=f"at most {MAX_IMPORT_CODES}"):
        parse_codes("\n".join(str(number) for number in range(MAX_IMPORT_CODES + 1)))


def test_a_tampered_codes_file_is_refused(tmp_path: Path) -> None:
    inventory = new_inventory(tmp_path, ["C1"])
    (batch,) = (tmp_path / LISTING.hex()).iterdir()
    batch.write_text(batch.read_text().replace('"ciphertext": "', '"ciphertext": "00'))
    reservation = inventory.reserve(LISTING, ORDER_A, 1)
    assert reservation is not None
    with pytest.raises(InventoryError, match="damaged"):
        inventory.code_texts(reservation.listing, reservation.codes)
