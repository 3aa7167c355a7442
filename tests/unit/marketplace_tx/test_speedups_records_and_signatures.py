"""The record copy and the threaded signature check give exactly the plain results.

- `speedups.evolve` (every rule's record update) against `dataclasses.replace` for
  each record type stored in state, on hypothesis-built records and changes: equal
  records, equal stored maps, the original untouched.
- `speedups.valid_signatures` (the state transition, R3, R8) against
  `[tx.has_valid_signature() for tx in txs]` on random mixes of valid and forged
  signatures, below and above the size from which it uses threads.
- Importing the pure core starts no thread: the pool is made on the first large batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx import speedups
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.items import Item
from marketplace_tx.rules.listings import Listing
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.records import record_to_map
from marketplace_tx.rules.reputation import Reputation
from marketplace_tx.rules.shops import Shop
from tests.paths import REPO_ROOT

RECORD_TYPES = [Account, Reputation, Shop, Listing, Item, Order]
"""Every frozen dataclass the rules store with `store_record` or evolve."""


def value_of(annotation: Any) -> st.SearchStrategy[Any]:
    """Values for a record field's annotation (the few shapes records use)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(value_of(argument) for argument in arguments))
    if origin is tuple:
        return st.lists(value_of(arguments[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=3)
    simple = {
        int: st.integers(0, 2**64 - 1),
        bool: st.booleans(),
        str: st.text(max_size=6),
        bytes: st.binary(min_size=32, max_size=32),
        type(None): st.none(),
    }
    return simple.get(annotation, st.integers(0, 9))


def records_of(record_type: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(record_type)
    return st.fixed_dictionaries(
        {field.name: value_of(hints[field.name]) for field in dataclasses.fields(record_type)}
    ).map(lambda values: record_type(**values))


@st.composite
def records_and_changes(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    record_type = draw(st.sampled_from(RECORD_TYPES))
    record = draw(records_of(record_type))
    hints = typing.get_type_hints(record_type)
    names = draw(st.lists(st.sampled_from([field.name for field in dataclasses.fields(record_type)]), unique=True))
    return record, {name: draw(value_of(hints[name])) for name in names}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records_and_changes())
def test_hypothesis_evolve_equals_dataclasses_replace(record_and_changes: tuple[Any, dict[str, Any]]) -> None:
    record, changes = record_and_changes
    before = dataclasses.asdict(record)
    fast = speedups.evolve(record, **changes)
    plain = dataclasses.replace(record, **changes)
    assert type(fast) is type(plain) and fast == plain
    assert record_to_map(fast) == record_to_map(plain)
    assert dataclasses.asdict(record) == before
    assert fast is not record


def test_every_record_type_is_plain_enough_for_evolve() -> None:
    """evolve's precondition: no `__post_init__`, every field set by `__init__`, frozen."""
    for record_type in RECORD_TYPES:
        assert not hasattr(record_type, "__post_init__"), record_type
        assert all(field.init for field in dataclasses.fields(record_type)), record_type
        assert record_type.__dataclass_params__.frozen, record_type


# --------------------------------------------------------------------------- signatures

KEYS = [KeyPair.from_seed(hashlib.sha256(b"speedups %d" % index).digest()) for index in range(3)]


def transactions(count: int, forged: set[int]) -> list[Transaction]:
    """`count` signed transfers; those at `forged` carry another transaction's signature."""
    result = []
    for index in range(count):
        key = KEYS[index % len(KEYS)]
        tx = sign_transaction(key, "speedups", "transfer", {"to": KEYS[0].address, "amount": 1 + index}, index, 10)
        if index in forged:
            tx = dataclasses.replace(tx, sig=hashlib.sha512(tx.sig).digest())
        result.append(tx)
    return result


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, speedups.PARALLEL_FROM + 3 * speedups.CHUNK), st.data())
def test_hypothesis_valid_signatures_equals_checking_one_by_one(count: int, data: st.DataObject) -> None:
    forged = data.draw(st.sets(st.integers(0, max(0, count - 1)), max_size=count))
    batch = transactions(count, forged)
    expected = [tx.has_valid_signature() for tx in batch]
    assert expected == [index not in forged for index in range(count)]
    assert speedups.valid_signatures(batch) == expected


@pytest.mark.parametrize("count", [speedups.PARALLEL_FROM - 1, speedups.PARALLEL_FROM, 2 * speedups.PARALLEL_FROM + 1])
def test_valid_signatures_keeps_the_order_across_chunks(count: int) -> None:
    forged = {0, speedups.CHUNK - 1, speedups.CHUNK, count - 1}
    assert speedups.valid_signatures(transactions(count, forged)) == [index not in forged for index in range(count)]


def test_importing_the_core_starts_no_thread() -> None:
    """No pool at import time; it appears on the first large batch (when several cores)."""
    script = (
        "import threading\n"
        "import marketplace_tx.rules.state_transition, marketplace_tx.speedups as speedups, consensus.tendermint\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert speedups._pool is None\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
