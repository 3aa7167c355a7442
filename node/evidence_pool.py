"""Evidence of equivocation waiting for a block (PROTOCOL R27).

When the consensus core finds two conflicting signed votes of one validator, or a
peer gossips such a pair, the evidence item is kept here until a block includes it.
A proposer takes the items still valid at the new height (`usable`), at most one per
validator; an item that is no longer valid (expired, or its validator already
punished) is dropped when it is next looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import sha256
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.evidence import check_evidence
from marketplace_tx.rules.state import State, StateReader
from node.fault_plan import Clock
from node.logging_setup import log_fields

log = logging.getLogger("marketchain.consensus")

NO_PROPOSER = b"\x00" * 32
"""The proposer field of the block context evidence is checked in (R27 checks ignore it)."""


def evidence_id(item: dict[str, Any]) -> bytes:
    """The identity of an evidence item: the hash of its canonical encoding."""
    return sha256(codec.encode(item))


def evidence_context(chain_id: str, params: Params, height: int, now_ms: int) -> BlockContext:
    """The block context in which evidence is checked for a block at `height` made now."""
    return BlockContext(chain_id, height, now_ms, NO_PROPOSER, params)


class EvidencePool:
    """Valid evidence items not yet in a final block, by identity."""

    def __init__(self, state: StateReader, chain_id: str, params: Params, clock: Clock) -> None:
        self.state = state
        """The chain state as of the last final block (the node's store)."""
        self.chain_id = chain_id
        """The chain evidence must be for."""
        self.params = params
        """Genesis parameters (evidence age limits)."""
        self.clock = clock
        """The node's clock (ms)."""
        self._items: dict[bytes, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, identity: bytes) -> bool:
        """True if the item of this identity (`evidence_id`) is kept."""
        return identity in self._items

    def against(self, validator: bytes) -> bool:
        """True if an item against `validator` is kept (one per validator is enough)."""
        return any(item["validator"] == validator for item in self._items.values())

    def add(self, item: dict[str, Any]) -> bool:
        """Keep an evidence item already checked; False if it was already kept."""
        identity = evidence_id(item)
        if identity in self._items:
            return False
        self._items[identity] = item
        log.warning("equivocation by %s at height %d", item["validator"].hex(), item["vote_a"]["height"],
                    extra=log_fields(event="equivocation", validator=item["validator"].hex(),
                                     height=item["vote_a"]["height"]))
        return True

    def usable(self, height: int) -> tuple[dict[str, Any], ...]:
        """Items valid in a block at `height` now, one per validator; invalid ones are dropped (R27)."""
        usable: list[dict[str, Any]] = []
        state = State(self.state)
        context = evidence_context(self.chain_id, self.params, height, self.clock())
        for identity, item in list(self._items.items()):
            try:
                check_evidence(state, context, item)
            except InvalidBlock:
                self._items.pop(identity, None)
                continue
            if all(item["validator"] != other["validator"] for other in usable):
                usable.append(item)
        return tuple(usable)

    def remove_included(self, items: Iterable[dict[str, Any]]) -> None:
        """Forget the items a final block included."""
        for item in items:
            self._items.pop(evidence_id(item), None)
