"""Fixtures of the core's unit tests."""

from __future__ import annotations

import pytest

from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import genesis_changes
from tests.unit.marketplace_tx.execution_fixtures import Chain, make_genesis


@pytest.fixture
def chain() -> Chain:
    """A chain at height 0 of `make_genesis()`: its genesis, tip and state."""
    genesis = make_genesis()
    tip, changes = genesis_changes(genesis)
    return Chain(genesis, tip, MemoryStateReader(changes))
