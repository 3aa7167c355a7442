"""The merchant's daily view (issue 12): the event stream reader behind `query orders
--follow`, and addresses shown with the local key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.commands.common import with_key_names
from client.events import parse_stream
from client.keystore import Keystore


def test_the_stream_reader_yields_events_with_ids_and_skips_comments() -> None:
    lines = iter([": keepalive\n", "retry: 3000\n", "\n", "id: 7:1\n", "event: order\n",
                  'data: {"order_id": "ab", "to": "placed"}\n', "\n", "event: gap\n", "data: {}\n", "\n"])
    events = list(parse_stream(lines))
    assert [(event.id, event.kind, event.data) for event in events] == [
        ("7:1", "order", {"order_id": "ab", "to": "placed"}), (None, "gap", {})]


def test_the_stream_reader_fails_on_bad_json() -> None:
    with pytest.raises(ValueError):
        list(parse_stream(iter(["event: order\n", "data: {not json\n", "\n"])))


def test_addresses_the_keystore_knows_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "keys"))
    key = Keystore(tmp_path / "keys").create("alice", None)
    other = "cd" * 32
    text = f"owner     {key.address.hex()}\nbuyer     {other}"
    assert with_key_names(text) == f"owner     {key.address.hex()} (alice)\nbuyer     {other}"


def test_no_keystore_changes_nothing_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "absent"))
    assert with_key_names("owner " + "ab" * 32) == "owner " + "ab" * 32
    assert not (tmp_path / "absent").exists()
