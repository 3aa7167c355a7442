"""Kill -9 of a state-sync restore at every crash point, then reopen (R39, node/state_restore.py).

A real process (tests/integration/restore_crash_writer.py) restores a market snapshot into
a LevelDB store and kills itself with SIGKILL at the point named by
`MARKETCHAIN_TEST_RESTORE_CRASH` (read by the node's FaultPlan). After each kill the
store must open (`initialize` with the genesis), say exactly what is done
(`StateRestore.pending`), never look like a whole state that is not the snapshot's, and
from there:
- resuming (the writer again, without the fault) gives byte for byte the store of an
  uninterrupted restore;
- abandoning gives byte for byte a fresh genesis store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import node.storage as storage
from node.fault_plan import RESTORE_CRASH_VARIABLE
from node.state_restore import WIPED_PREFIXES, StateRestore
from node.storage import ChainStore, StorageError
from tests.paths import REPO_ROOT
from tests.unit.node import state_restore_market as market

RUN_DEADLINE_S = 120.0
"""Generous: one restore of a small snapshot on a loaded machine."""
WIPE_BATCH_KEYS = 4
"""Small, so that the genesis state takes several wipe batches and `wipe` stops inside the wipe."""
CHUNKS = 8
"""The snapshot's depth is 3."""


def run_writer(db: Path, snapshot: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    """The writer on `db`, killed at `crash_at` (None: runs to the end)."""
    environment = {name: value for name, value in os.environ.items() if name != RESTORE_CRASH_VARIABLE}
    if crash_at is not None:
        environment[RESTORE_CRASH_VARIABLE] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.restore_crash_writer", str(db), str(snapshot), str(WIPE_BATCH_KEYS)],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=RUN_DEADLINE_S,
    )


def contents(db: Path) -> dict[bytes, bytes]:
    """Every key and value of the store at `db`, which must open with the market genesis."""
    store = ChainStore(db)
    try:
        store.initialize(market.make_genesis())
        return dict(store.db.iterator())
    finally:
        store.close()


@pytest.fixture(scope="module", name="prepared")
def prepared_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, bytes], dict[bytes, bytes]]:
    """The snapshot file, the store of an uninterrupted restore, and a fresh genesis store."""
    folder = tmp_path_factory.mktemp("restore")
    source = ChainStore(folder / "source")
    snapshot = market.snapshot_at(market.build_market(source), 3)
    source.close()
    path = folder / "snapshot.msgpack"
    path.write_bytes(snapshot.to_bytes())
    finished = run_writer(folder / "straight", path, None)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1] == f"finished {market.SNAPSHOT_HEIGHT}"
    fresh = ChainStore(folder / "fresh")
    fresh.initialize(market.make_genesis())
    fresh.close()
    return path, contents(folder / "straight"), contents(folder / "fresh")


EXPECTED_DONE = {
    "begin": set(),
    "wipe": set(),
    "chunk:0": {7},
    "chunk:3": {7, 6, 5, 4},
    "before_finish": set(range(CHUNKS)),
}
"""What `pending().done` must say after a kill at each point (the writer goes 7, 6, … 0)."""


@pytest.mark.parametrize("crash_at", [*EXPECTED_DONE, "after_finish"])
def test_a_restore_killed_anywhere_resumes_to_the_same_store_or_goes_back_to_genesis(
    prepared: tuple[Path, dict[bytes, bytes], dict[bytes, bytes]], tmp_path: Path, crash_at: str
) -> None:
    snapshot, straight, fresh = prepared
    db = tmp_path / "joiner"
    fresh_store = ChainStore(db)
    fresh_store.initialize(market.make_genesis())  # a joining node writes its genesis first
    fresh_store.close()
    killed = run_writer(db, snapshot, crash_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stdout, killed.stderr)

    store = ChainStore(db)
    head = store.initialize(market.make_genesis())  # opens: restoring skips the tree check
    progress = StateRestore(store).pending()
    if crash_at == "after_finish":
        assert progress is None and head.height == market.SNAPSHOT_HEIGHT and not store.restoring
    else:
        assert store.restoring and head.height == 0  # never a whole-looking state
        assert progress is not None and progress.done == EXPECTED_DONE[crash_at]
        assert progress.wiped == (crash_at not in ("begin", "wipe"))
        assert progress.manifest.height == market.SNAPSHOT_HEIGHT
    if crash_at == "wipe":
        left = sum(1 for prefix in WIPED_PREFIXES for _ in store.db.iterator(prefix=prefix, include_value=False))
        assert 0 < left  # stopped inside the wipe, after one batch of WIPE_BATCH_KEYS
    store.close()
    shutil.copytree(db, tmp_path / "to_abandon")

    resumed = run_writer(db, snapshot, None)
    assert resumed.returncode == 0, resumed.stderr
    ready = resumed.stdout.splitlines()[0]
    if crash_at != "after_finish":
        assert ready == "ready " + " ".join(str(index) for index in sorted(EXPECTED_DONE[crash_at]))
    assert contents(db) == straight

    store = ChainStore(tmp_path / "to_abandon")
    store.initialize(market.make_genesis())
    if crash_at == "after_finish":
        with pytest.raises(StorageError, match="no state-sync restore is under way"):
            StateRestore(store).abandon(market.make_genesis())
        store.close()
        assert contents(tmp_path / "to_abandon") == straight
        return
    StateRestore(store).abandon(market.make_genesis())
    assert store.db.get(storage.RESTORE_KEY) is None
    store.close()
    assert contents(tmp_path / "to_abandon") == fresh
