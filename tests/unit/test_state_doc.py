"""docs/state.md documents every state family and every field of every record (R35).

R35 leaves each record's fields to the project's docs, and a second implementation
reproduces state roots from that page alone: a field added to a record without a row
in its table would silently make the page wrong. Each record's section must have one
table row per dataclass field, and the keys table one row per family tag.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from marketplace_tx.rules import state_keys
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.items import Item
from marketplace_tx.rules.listings import Listing
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.reputation import Reputation
from marketplace_tx.rules.shops import Shop

PAGE = Path(__file__).resolve().parents[2] / "docs" / "state.md"
"""The page checked."""

RECORDS = {"a": Account, "s": Shop, "l": Listing, "o": Order, "i": Item, "q": Reputation}
"""Each record dataclass by the family tag whose section documents it."""


def section(tag: str) -> str:
    """The text of the `### `tag`…` section of the page."""
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^### `{tag}`.*?(?=^##)", text, re.S | re.M)
    assert match, f"docs/state.md has no section for the `{tag}` family"
    return match.group(0)


def documented_fields(text: str) -> set[str]:
    """The field names in the section's first table (first cell of each row, in
    backticks); later tables describe nested maps (history entries, reviews)."""
    table = re.search(r"^\|.*?(?=^[^|])", text, re.S | re.M)
    assert table, "the section has no table"
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", table.group(0), re.M))


@pytest.mark.parametrize("tag", sorted(RECORDS))
def test_every_field_of_the_record_has_a_row(tag: str) -> None:
    fields = {field.name for field in dataclasses.fields(RECORDS[tag])}
    rows = documented_fields(section(tag))
    assert fields - rows == set(), f"fields missing in docs/state.md's `{tag}` section"
    assert rows - fields == set(), f"rows of docs/state.md's `{tag}` section that are no field"


def test_every_family_tag_is_in_the_keys_table() -> None:
    text = PAGE.read_text(encoding="utf-8")
    tags = {
        value.decode()
        for name, value in vars(state_keys).items()
        if name.isupper() and isinstance(value, bytes) and len(value) == 1
    }
    assert tags, "no family tags found in state_keys"
    rows = set(re.findall(r"^\| `([a-z])`", text, re.M))
    assert tags - rows == set(), "family tags missing from docs/state.md's keys table"
