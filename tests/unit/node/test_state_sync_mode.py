"""When a node joins by state sync (node/state_sync_mode.py, PROTOCOL R39), what the API
serves meanwhile (node/http/state_sync_gate.py), and `init --state-sync`."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.commands import init_command
from node.config import ConfigError, StatesyncConfig
from node.http.state_sync_gate import is_open_while_syncing, syncing_message
from node.state_sync_mode import state_sync_needed
from node.state_sync_progress import ProgressReporter, progress_bar, progress_line
from node.storage import RESTORE_KEY, ChainStore
from tests.unit.node.snapshot_chain import crowded_chain, crowded_genesis

ENABLED = StatesyncConfig(enable=True)


def test_a_fresh_store_joins_only_when_enabled(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "chain.db")
    store.initialize(crowded_genesis(3))
    try:
        assert state_sync_needed(store, ENABLED, tmp_path) is True
        assert state_sync_needed(store, StatesyncConfig(), tmp_path) is False
    finally:
        store.close()


def test_a_store_with_blocks_does_not_state_sync(tmp_path: Path) -> None:
    chain = crowded_chain(tmp_path / "chain.db", extra_accounts=3, blocks=1)
    try:
        assert state_sync_needed(chain.store, ENABLED, tmp_path) is False
    finally:
        chain.store.close()


def test_an_interrupted_restore_resumes_only_with_state_sync_enabled(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "chain.db")
    store.initialize(crowded_genesis(3))
    store.db.put(RESTORE_KEY, b"partial")
    try:
        assert state_sync_needed(store, ENABLED, tmp_path / "data") is True
        with pytest.raises(ConfigError, match=r"state sync was interrupted.*enable = true.*delete .*data"):
            state_sync_needed(store, StatesyncConfig(), tmp_path / "data")
    finally:
        store.close()


def test_only_what_does_not_read_the_state_is_served_while_syncing() -> None:
    for path in ("/", "/status", "/metrics", "/openapi.json", "/snapshots", "/snapshots/10/manifest",
                 "/snapshots/10/chunks/3", "/static/app.js"):
        assert is_open_while_syncing(path), path
    for path in ("/txs", "/txs/batch", "/accounts/ab", "/blocks/1", "/blocks", "/shops", "/state/proof",
                 "/light/changes", "/events", "/statusx", "/validators"):
        assert not is_open_while_syncing(path), path


def test_the_syncing_message_gives_the_progress() -> None:
    assert "looking for a snapshot" in syncing_message({"height": None, "chunks": "0/0"})
    assert syncing_message({"height": 5000, "chunks": "12/64"}).endswith(
        "restoring snapshot of height 5000: 12/64 chunks")


def test_init_state_sync_writes_enable(tmp_path: Path) -> None:
    home = tmp_path / "joiner"
    result = CliRunner().invoke(init_command, ["--home", str(home), "--state-sync"])
    assert result.exit_code == 0, result.output
    assert "[statesync]\nenable = true" in (home / "config.toml").read_text()
    plain = tmp_path / "plain"
    assert CliRunner().invoke(init_command, ["--home", str(plain)]).exit_code == 0
    assert "[statesync]\nenable = false" in (plain / "config.toml").read_text()


def test_progress_is_a_line_and_a_bar() -> None:
    fetching = {"phase": "fetching", "height": 5000, "chunks_done": 12, "chunks_total": 64}
    assert progress_line(fetching, 3.25) == "state sync: 12/64 chunks (18 %) of height 5000, 3.2 chunks/s"
    assert progress_bar(fetching, 0).startswith("[#####" + "." * 25 + "] state sync: 12/64")
    assert progress_line(fetching, None) == "state sync: 12/64 chunks (18 %) of height 5000"  # no rate measured yet
    assert "discovering" in progress_line({"phase": "discovering", "offering_peers": 2}, 0)


def test_the_terminal_bar_is_redrawn_in_place_and_ended() -> None:
    stream = io.StringIO()
    progress = {"phase": "fetching", "height": 9, "chunks_done": 1, "chunks_total": 2}

    async def main() -> None:
        reporter = ProgressReporter(lambda: progress, stream, bar=True)
        reporter.start()
        await asyncio.sleep(1.2)
        reporter.stop()

    asyncio.run(main())
    text = stream.getvalue()
    assert text.startswith("\r[") and "1/2 chunks (50 %) of height 9" in text and text.endswith("\n")


def test_the_cli_sync_line_says_state_sync() -> None:
    from client.progress import describe_sync, sync_summary

    status = {"syncing": "state", "height": 0, "chunks": "3/8", "sync": {"height": 0, "target": 0, "syncing": False},
              "state_sync": {"phase": "fetching", "height": 500, "chunks": "3/8"}}
    summary = sync_summary(status)
    assert summary["syncing"] is True  # `marketchain sync` keeps waiting
    assert describe_sync(summary) == "state sync: restoring snapshot of height 500: 3/8 chunks"
    assert "state_sync" not in sync_summary({"syncing": False, "height": 7})  # unchanged otherwise
