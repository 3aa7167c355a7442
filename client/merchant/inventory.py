"""The merchant agent's codes (issue 16): one code per unit of a digital listing, each
delivered exactly once, even across a kill -9 at any point.

Layout of the inventory directory (`<state_dir>/inventory/`):

- `key.json`: the Argon2id parameters of the passphrase (inventory_crypto.py);
- `<listing id>/<NNNNNN>.json`: one file per import, `{"listing", "count", "nonce",
  "ciphertext"}`: the codes encrypted; only their number is in clear. A code is known by
  `"<NNNNNN>:<position>"`; files are only ever added, never changed;
- `journal.jsonl`: what happened to codes, one fsynced JSON line per step and no code text:
  `{"status": "reserved", "order", "listing", "codes": [...]}` (written before any
  transaction carrying them is signed), `{"status": "submitted", "order", "tx"}`,
  `{"status": "used", "order"}` (the chain shows the order delivered) or
  `{"status": "freed", "order"}` (the order ended without a delivery: the codes are free again).

The order's delivery always uses the codes reserved for it, so a delivery repeated after a
crash carries the same codes; the chain decides on restart (agent.py, `recover`).
Bounds: an import holds at most `MAX_IMPORT_CODES` codes of at most `MAX_CODE_BYTES` each;
memory holds the status of each reserved or used code, and each import's count.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.merchant.durable_files import Journal, ensure_directory, write_json_atomically
from client.merchant.inventory_crypto import InventoryError, open_codes, seal_codes
from marketplace_tx.rules.schema import MAX_DELIVERY_BYTES, MIN_DELIVERY_BYTES

MAX_CODE_BYTES = MAX_DELIVERY_BYTES - MIN_DELIVERY_BYTES
"""The longest code: alone, sealed, it fills an `order_deliver` content (4096 − 48 bytes)."""

MAX_IMPORT_CODES = 100_000
"""Most codes in one `codes add` file."""

MAX_IMPORT_BYTES = 8 * 1024 * 1024
"""Largest `codes add` file."""

JOURNAL_FILE = "journal.jsonl"
"""The status journal in the inventory directory."""

_BATCH_NAME = re.compile(r"(\d{6})\.json")
_LISTING_NAME = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ListingCounts:
    """How many codes of one listing are in each status (`codes list`)."""

    listing: str
    """The listing id (hex)."""
    free: int
    """Codes not reserved for any order."""
    reserved: int
    """Codes reserved for an order not yet seen delivered."""
    used: int
    """Codes delivered (the chain shows the order delivered)."""


@dataclass
class Reservation:
    """The codes held for one order."""

    listing: str
    """The order's listing (hex)."""
    codes: tuple[str, ...]
    """The codes' ids, `"NNNNNN:position"`, in delivery order."""
    status: str
    """`reserved`, `submitted`, `used` or `freed`."""
    tx: str | None = None
    """The last `order_deliver` submitted with them (hex), if any."""


def parse_codes(text: str) -> list[str]:
    """The codes of a `codes add` file: one per line, surrounding spaces stripped, blank lines
    skipped; InventoryError names the line of a code that is too long or given twice."""
    codes: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.strip()
        if not code:
            continue
        if len(code.encode("utf-8")) > MAX_CODE_BYTES:
            raise InventoryError(f"line {number}: a code is at most {MAX_CODE_BYTES} bytes")
        if code in seen:
            raise InventoryError(f"line {number}: this code is given twice")
        seen.add(code)
        codes.append(code)
    if not codes:
        raise InventoryError("no codes in the file (one code per line)")
    if len(codes) > MAX_IMPORT_CODES:
        raise InventoryError(f"{len(codes)} codes: at most {MAX_IMPORT_CODES} per file")
    return codes


class Inventory:
    """The codes of every digital listing, their reservations and the journal."""

    def __init__(self, directory: Path, key: bytes | None = None) -> None:
        """The inventory in `directory`; without `key` only counts can be read. The journal is
        replayed now (a last line cut short by a crash is dropped)."""
        self.directory = directory
        """The inventory directory."""
        self.key = key
        """The SecretBox key of the codes, or None."""
        self.journal = Journal(directory / JOURNAL_FILE)
        """The status journal."""
        self.reservations: dict[str, Reservation] = {}
        """Order id (hex) → its codes, for every order codes were ever reserved for (freed ones dropped)."""
        self._taken: dict[str, set[str]] = {}
        self._batch_counts: dict[tuple[str, str], int] = {}
        for entry in self.journal.entries():
            self._apply(entry)

    def _apply(self, entry: dict[str, Any]) -> None:
        order, status = entry.get("order"), entry.get("status")
        if status == "reserved":
            reservation = Reservation(str(entry["listing"]), tuple(entry["codes"]), "reserved")
            self.reservations[order] = reservation
            self._taken.setdefault(reservation.listing, set()).update(reservation.codes)
        elif order in self.reservations:
            reservation = self.reservations[order]
            if status == "submitted":
                reservation.status, reservation.tx = "submitted", entry.get("tx")
            elif status == "used":
                reservation.status = "used"
            elif status == "freed":
                self._taken.get(reservation.listing, set()).difference_update(reservation.codes)
                del self.reservations[order]

    def _record(self, entry: dict[str, Any]) -> None:
        ensure_directory(self.directory)
        self.journal.append(entry)
        self._apply(entry)

    # --- the codes' files ---------------------------------------------------------------------

    def _batches(self, listing: str) -> list[str]:
        folder = self.directory / listing
        if not folder.is_dir():
            return []
        return sorted(match.group(1) for name in os.listdir(folder) if (match := _BATCH_NAME.fullmatch(name)))

    def _read_batch(self, listing: str, batch: str) -> dict[str, Any]:
        path = self.directory / listing / f"{batch}.json"
        try:
            document = json.loads(path.read_bytes())
            int(document["count"])
            return document
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InventoryError(f"codes file {path} is damaged: {error}") from None

    def _count(self, listing: str, batch: str) -> int:
        if (listing, batch) not in self._batch_counts:
            self._batch_counts[(listing, batch)] = int(self._read_batch(listing, batch)["count"])
        return self._batch_counts[(listing, batch)]

    def _code_ids(self, listing: str) -> list[str]:
        return [f"{batch}:{position}" for batch in self._batches(listing) for position in range(self._count(listing, batch))]

    def _needs_key(self) -> bytes:
        if self.key is None:
            raise InventoryError("the inventory's passphrase is needed for this")
        return self.key

    def add_codes(self, listing: bytes, codes: list[str]) -> int:
        """Store `codes` (see `parse_codes`) for `listing`, encrypted, in a new file; their number."""
        key = self._needs_key()
        folder = ensure_directory(self.directory / listing.hex())
        document = {"version": 1, "listing": listing.hex(), "count": len(codes), **seal_codes(key, codes)}
        while True:
            batches = self._batches(listing.hex())
            number = int(batches[-1]) + 1 if batches else 0
            try:
                write_json_atomically(folder / f"{number:06d}.json", document, overwrite=False)
                return len(codes)
            except FileExistsError:
                continue  # another import took that number

    def code_texts(self, listing: str, code_ids: tuple[str, ...]) -> list[str]:
        """The text of each code id of `listing`, in order."""
        key, opened = self._needs_key(), {}
        texts = []
        for code_id in code_ids:
            batch, _, position = code_id.partition(":")
            if batch not in opened:
                where = str(self.directory / listing / f"{batch}.json")
                opened[batch] = open_codes(key, self._read_batch(listing, batch), where)
            texts.append(opened[batch][int(position)])
        return texts

    # --- statuses -------------------------------------------------------------------------------

    def counts(self) -> list[ListingCounts]:
        """Free / reserved / used codes per listing that has any, by listing id."""
        folders = {path.name for path in self.directory.iterdir() if path.is_dir() and _LISTING_NAME.fullmatch(path.name)
                   } if self.directory.is_dir() else set()
        listings = sorted(set(self._taken) | folders)
        result = []
        for listing in listings:
            total = len(self._code_ids(listing))
            used = sum(len(r.codes) for r in self.reservations.values() if r.listing == listing and r.status == "used")
            reserved = sum(len(r.codes) for r in self.reservations.values() if r.listing == listing and r.status != "used")
            result.append(ListingCounts(listing, total - used - reserved, reserved, used))
        return result

    def free_count(self, listing: bytes) -> int:
        """How many codes of `listing` are free."""
        taken = self._taken.get(listing.hex(), set())
        return sum(1 for code_id in self._code_ids(listing.hex()) if code_id not in taken)

    def reservation(self, order_id: bytes) -> Reservation | None:
        """The codes held for `order_id`, if any (also once used)."""
        return self.reservations.get(order_id.hex())

    def pending(self) -> list[str]:
        """Orders (hex) whose codes are reserved but not yet seen delivered: the chain decides them on restart."""
        return [order for order, reservation in self.reservations.items() if reservation.status != "used"]

    def reserve(self, listing: bytes, order_id: bytes, quantity: int) -> Reservation | None:
        """Reserve `quantity` free codes of `listing` for `order_id` (durably, before anything is
        signed with them); the existing reservation if it has one; None if too few are free."""
        existing = self.reservation(order_id)
        if existing is not None:
            return existing
        taken = self._taken.get(listing.hex(), set())
        chosen = []
        for code_id in self._code_ids(listing.hex()):
            if code_id not in taken:
                chosen.append(code_id)
                if len(chosen) == quantity:
                    break
        if len(chosen) < quantity or quantity <= 0:
            return None
        self._record({"status": "reserved", "order": order_id.hex(), "listing": listing.hex(), "codes": chosen})
        return self.reservations[order_id.hex()]

    def mark_submitted(self, order_id: bytes, tx_hash: str) -> None:
        """Note that an `order_deliver` carrying the order's codes was submitted as `tx_hash`."""
        self._record({"status": "submitted", "order": order_id.hex(), "tx": tx_hash})

    def mark_used(self, order_id: bytes) -> None:
        """The chain shows `order_id` delivered: its codes are used for good."""
        reservation = self.reservation(order_id)
        if reservation is not None and reservation.status != "used":
            self._record({"status": "used", "order": order_id.hex()})

    def release(self, order_id: bytes) -> None:
        """`order_id` ended without a delivery: its codes are free again."""
        if order_id.hex() in self.reservations and self.reservations[order_id.hex()].status != "used":
            self._record({"status": "freed", "order": order_id.hex()})
