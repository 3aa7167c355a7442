"""Where the merchant agent is in the node's event stream: the id (`height:sequence`) of the
last event it has finished with, persisted atomically so that a restart resumes after it
(`Last-Event-ID`) and misses nothing the node still holds (a `gap` says otherwise)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from client.merchant.durable_files import write_json_atomically

CURSOR_FILE = "cursor.json"
"""The cursor's file in the agent's state directory: `{"last_event_id": "H:S"}`."""

EVENT_ID_PATTERN = re.compile(r"(\d{1,20}):(\d{1,20})")
"""An event id of the node's stream."""


class CursorError(Exception):
    """The cursor file exists but cannot be read."""


def event_position(event_id: str) -> tuple[int, int]:
    """(height, sequence) of a stream event id, for comparing ids; ValueError if malformed."""
    match = EVENT_ID_PATTERN.fullmatch(event_id)
    if match is None:
        raise ValueError(f"{event_id!r} is not an event id height:sequence")
    return int(match.group(1)), int(match.group(2))


class Cursor:
    """The persisted position in the stream."""

    def __init__(self, directory: Path) -> None:
        """The cursor kept in `directory/cursor.json` (read now; None if there is none yet)."""
        self.path = directory / CURSOR_FILE
        """The cursor's file."""
        self.last_event_id: str | None = self._read()
        """The id of the last event finished with, or None before the first."""

    def _read(self) -> str | None:
        if not self.path.exists():
            return None
        try:
            value = json.loads(self.path.read_bytes())["last_event_id"]
            if value is not None:
                event_position(value)
            return value
        except (ValueError, KeyError, TypeError) as error:
            raise CursorError(f"cursor file {self.path} is damaged ({error}); delete it to start from now"
                              " (open orders are still found on the chain)") from None

    @property
    def height(self) -> int:
        """The height of the last event finished with (0 before the first)."""
        return 0 if self.last_event_id is None else event_position(self.last_event_id)[0]

    def advance(self, event_id: str) -> None:
        """Persist `event_id` as finished with, unless the cursor is already at or past it."""
        position = event_position(event_id)
        if self.last_event_id is not None and event_position(self.last_event_id) >= position:
            return
        write_json_atomically(self.path, {"last_event_id": event_id})
        self.last_event_id = event_id
