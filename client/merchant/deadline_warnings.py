"""Warnings before an accepted parcel order's ship deadline (R15: an accepted order not shipped
in time expires and the escrow goes back to the buyer), each given once: the deadlines warned
about are kept in `<state_dir>/deadline-warnings.json`, and an entry is dropped once its
deadline has passed (so the file holds at most the open accepted orders)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client.merchant.decisions import needs_deadline_warning
from client.merchant.durable_files import write_json_atomically
from client.merchant.events import deadline_warning_id

WARNINGS_FILE = "deadline-warnings.json"
"""The file of warnings given: `{event id: deadline ms}`."""


class DeadlineWarnings:
    """The deadline warnings already given."""

    def __init__(self, state_dir: Path) -> None:
        """Read the warnings given from `state_dir` (none if the file is missing or damaged)."""
        self.path = state_dir / WARNINGS_FILE
        """The file."""
        self.given_ids: dict[str, int] = {}
        """Event id → the deadline it warned about."""
        try:
            loaded = json.loads(self.path.read_bytes())
            self.given_ids = {str(key): int(value) for key, value in loaded.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            pass

    def due(self, order: dict[str, Any], now_ms: int, warn_before_ms: int) -> tuple[str, dict[str, Any]] | None:
        """`(event id, webhook data)` of the warning `order` needs now, or None (not due, or given)."""
        if not needs_deadline_warning(order, now_ms, warn_before_ms):
            return None
        deadline = int(order["deadline"])
        event_id = deadline_warning_id(bytes.fromhex(order["id"]), deadline)
        if event_id in self.given_ids:
            return None
        return event_id, {"order": {name: value for name, value in order.items() if name != "delivery"},
                          "deadline": deadline}

    def given(self, event_id: str, deadline_ms: int, now_ms: int) -> None:
        """Remember (durably) that `event_id` was given; forget warnings whose deadline passed."""
        self.given_ids = {key: value for key, value in self.given_ids.items() if value >= now_ms}
        self.given_ids[event_id] = deadline_ms
        write_json_atomically(self.path, self.given_ids)
