"""Longest test modules first, so that `make test`'s workers finish together.

pytest-xdist's `worksteal` mode hands each worker a contiguous share of the collected
tests and lets an idle worker take half of what another still has queued, from the end.
When a one-minute test sits at the end of the collection, one worker runs it alone while
the other idles: the suite's wall time is the sum of both. `order_slowest_first` sorts
the collected items by the recorded wall time of their module (longest first), keeping
each module's tests together and in their order (module-scoped fixtures, such as a
shared node, are then set up once per worker). Other modules that start processes come
next, then the unit tests, each group in collection order.

Refresh the table from a run with `--durations=60` (the sum of each module's setup, call
and teardown times, rounded); only the order matters, not the exact numbers.
"""

from __future__ import annotations

from typing import Any

MODULE_SECONDS: dict[str, float] = {
    "tests/unit/marketplace_tx/test_speedups_codec.py": 152,
    "tests/e2e/test_faults.py": 117,
    "tests/e2e/test_cli_after_sales.py": 111,
    "tests/unit/consensus/test_consensus_simulation.py": 108,
    "tests/e2e/adversary/test_attacks.py": 100,
    "tests/fuzz/test_fuzz_blocks_votes.py": 97,
    "tests/integration/test_http_work_limits.py": 90,
    "tests/e2e/test_cli.py": 88,
    "tests/e2e/test_cli_money.py": 70,
    "tests/e2e/test_state_sync_hostile.py": 70,
    "tests/e2e/test_multinode.py": 64,
    "tests/integration/test_pruning_disk.py": 58,
    "tests/e2e/test_cli_testnet_partial.py": 52,
    "tests/e2e/test_state_sync.py": 45,
    "tests/e2e/test_state_sync_crash.py": 45,
    "tests/unit/marketplace_tx/test_speedups_records_and_signatures.py": 45,
    "tests/e2e/test_cli_orders.py": 45,
    "tests/unit/marketplace_tx/test_marketplace_properties.py": 38,
    "tests/fuzz/test_fuzz_codec.py": 38,
    "tests/integration/test_crash_consistency.py": 34,
    "tests/fuzz/test_fuzz_genesis_config.py": 28,
    "tests/integration/test_openapi_conformance.py": 27,
    "tests/fuzz/test_fuzz_http.py": 25,
    "tests/unit/marketplace_tx/test_speedups_signing_bytes.py": 23,
    "tests/unit/mempool/test_mempool_fee_sums.py": 20,
    "tests/fuzz/test_fuzz_transactions.py": 20,
    "tests/e2e/test_cli_init.py": 18,
    "tests/unit/node/test_worker_processes.py": 18,
    "tests/integration/test_node_restart.py": 17,
    "tests/integration/test_mempool_journal.py": 17,
    "tests/e2e/test_harness_good_client.py": 16,
    "tests/fuzz/test_fuzz_p2p.py": 14,
    "tests/fuzz/test_fuzz_keystore.py": 14,
    "tests/e2e/test_explorer_browser.py": 13,
    "tests/integration/test_abuse_limits.py": 12,
}
"""Wall time (s) of each slow test module in one `pytest -n 2 --dist worksteal` run of the
whole suite on the shared 2-core machine under heavy outside load (16 min 37 s in all):
the sum of its tests' setup, call and teardown times. Only their order matters."""

PROCESS_MODULE_SECONDS = 10.0
"""The weight of a module of tests/e2e/ or tests/integration/ not in the table: these start
node processes, so they go before the unit tests."""

PROCESS_FOLDERS = ("tests/e2e/", "tests/integration/")
"""Where the tests that start processes live."""


def module_seconds(item: Any) -> float:
    """The recorded wall time of `item`'s module; `PROCESS_MODULE_SECONDS` for another
    module that starts processes, 0 for the rest."""
    module = item.nodeid.split("::", 1)[0]
    if module in MODULE_SECONDS:
        return MODULE_SECONDS[module]
    return PROCESS_MODULE_SECONDS if module.startswith(PROCESS_FOLDERS) else 0.0


def order_slowest_first(items: list[Any]) -> None:
    """Sort `items` in place: slowest modules first, each module's tests kept together in
    their collection order; the sort is stable, so every worker collects the same order."""
    position = {id(item): index for index, item in enumerate(items)}
    first_of_module: dict[str, int] = {}
    for index, item in enumerate(items):
        first_of_module.setdefault(item.nodeid.split("::", 1)[0], index)
    items.sort(key=lambda item: (-module_seconds(item), first_of_module[item.nodeid.split("::", 1)[0]],
                                 position[id(item)]))
