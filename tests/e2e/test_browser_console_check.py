"""The browser console check cannot pass without looking (tests/e2e/browser.py).

Fake drivers stand in for selenium: one whose console cannot be read, one that reads
something that is not a list of entries, and one with entries of several levels.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import ConsoleUnreadable, severe_console_errors


class UnreadableConsole:
    """A driver without the log endpoint (as some remote drivers are)."""

    def get_log(self, kind: str) -> Any:
        """Fail the way such drivers do."""
        raise RuntimeError(f"unknown command: log type {kind!r}")


class OddConsole:
    """A driver whose log endpoint answers something else than a list."""

    def get_log(self, kind: str) -> Any:
        """An answer of the wrong shape."""
        return None


class ChattyConsole:
    """A driver whose console holds entries of several levels."""

    def get_log(self, kind: str) -> Any:
        """Two entries, one SEVERE."""
        assert kind == "browser"
        return [{"level": "INFO", "message": "loaded"}, {"level": "SEVERE", "message": "app.js 1:2 boom"}]


def test_an_unreadable_console_fails_the_check() -> None:
    with pytest.raises(ConsoleUnreadable, match="cannot read the browser console"):
        severe_console_errors(UnreadableConsole())  # type: ignore[arg-type]


def test_a_console_read_of_the_wrong_shape_fails_the_check() -> None:
    with pytest.raises(ConsoleUnreadable):
        severe_console_errors(OddConsole())  # type: ignore[arg-type]


def test_only_severe_entries_are_reported() -> None:
    assert severe_console_errors(ChattyConsole()) == ["app.js 1:2 boom"]  # type: ignore[arg-type]
