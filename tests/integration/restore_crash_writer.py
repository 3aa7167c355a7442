"""A state-sync restore to be killed: restores a snapshot into a store, or resumes it.

    MARKETCHAIN_TEST_RESTORE_CRASH=POINT python -m tests.integration.restore_crash_writer DB SNAPSHOT [WIPE_BATCH_KEYS]

Opens a `ChainStore` at DB with the market genesis (tests/unit/node/state_restore_market.py),
reads SNAPSHOT (canonical `{chunks, commit, header, manifest}`, what the joiner verified)
and restores it with `StateRestore`, whose crash point comes from the environment
through the node's `FaultPlan` (node/fault_plan.py), exactly as a node reads it. If the
store is already restoring that manifest, it resumes: only the chunks not done are
written (in descending index order), then `finish`. Prints `ready <done indexes>`,
`wrote <index>` per chunk and `finished <height>`, flushing each line; at a crash point
the process dies by SIGKILL (tests/integration/test_restore_crash.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshots import manifest_from_map
from node.fault_plan import FaultPlan
from node.state_restore import WIPE_BATCH_KEYS, StateRestore
from node.storage import ChainStore
from tests.unit.node.state_restore_market import Snapshot, make_genesis


def read_snapshot(path: Path) -> Snapshot:
    """The snapshot `Snapshot.to_bytes` wrote to `path`."""
    value = codec.decode(path.read_bytes())
    manifest = manifest_from_map(codec.decode(value["manifest"]))
    return Snapshot(manifest, value["chunks"], value["header"], value["commit"])


def main(argv: list[str]) -> int:
    db_path, snapshot = Path(argv[1]), read_snapshot(Path(argv[2]))
    wipe_batch_keys = int(argv[3]) if len(argv) > 3 else WIPE_BATCH_KEYS
    store = ChainStore(db_path)
    head = store.initialize(make_genesis())
    restorer = StateRestore(store, FaultPlan.from_environment(os.environ).restore_crash, wipe_batch_keys)
    progress = restorer.pending()
    if progress is None and head.height != 0:
        print(f"finished {head.height}", flush=True)
        return 0
    if progress is None or progress.manifest != snapshot.manifest:
        restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    progress = restorer.pending()
    assert progress is not None
    print("ready " + " ".join(str(index) for index in sorted(progress.done)), flush=True)
    for index in reversed(range(len(snapshot.chunks))):
        if index not in progress.done:
            restorer.write_chunk(index, snapshot.tree(index))
            print(f"wrote {index}", flush=True)
    tip = restorer.finish()
    print(f"finished {tip.height}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
