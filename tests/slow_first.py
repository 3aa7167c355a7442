"""Longest test modules first, so that `make test`'s two workers finish together.

pytest-xdist's `worksteal` mode hands each worker a contiguous share of the collected
tests and lets an idle worker take half of what another still has queued, from the end.
When a one-minute test sits at the end of the collection, one worker runs it alone while
the other idles: the suite's wall time is the sum of both. `order_slowest_first` sorts
the collected items by the recorded wall time of their module (longest first), keeping
each module's tests together and in their order (module-scoped fixtures, such as a
shared node, are then set up once per worker). Other modules that start processes come
next, then the unit tests, each group in collection order.

Refresh the table from a run such as
`pytest -q -p no:xdist --durations=0 tests/…` (the sum of each module's setup, call and
teardown times, rounded); only the order matters, not the exact numbers.
"""

from __future__ import annotations

from typing import Any

MODULE_SECONDS: dict[str, float] = {
    "tests/e2e/test_faults.py": 170,  # three testnets at once: the longest scenario, ~65 s alone
    "tests/e2e/adversary/test_attacks.py": 150,
    "tests/e2e/test_cli_after_sales.py": 110,
    "tests/e2e/test_cli_money.py": 105,
    "tests/e2e/test_multinode.py": 70,
    "tests/e2e/test_cli_orders.py": 55,
    "tests/e2e/test_cli_testnet_partial.py": 50,
    "tests/e2e/test_cli.py": 36,
    "tests/unit/consensus/test_consensus_simulation.py": 32,
    "tests/e2e/test_explorer_browser.py": 32,
    "tests/integration/test_openapi_conformance.py": 30,
    "tests/integration/test_crash_consistency.py": 25,
    "tests/fuzz/test_fuzz_http.py": 21,
    "tests/e2e/test_cli_init.py": 17,
    "tests/e2e/test_harness_good_client.py": 16,
    "tests/integration/test_mempool_journal.py": 16,
    "tests/integration/test_node_restart.py": 16,
    "tests/integration/test_abuse_limits.py": 12,
}
"""Recorded wall time (s) of each slow test module: the matrix and the simulation alone on
a quiet 2-core machine, the others from one serial run under heavy load scaled down by
the same factor. Only their order matters."""

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
