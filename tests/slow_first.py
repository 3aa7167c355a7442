"""Longest test modules first, so that `make test`'s two workers finish together.

pytest-xdist's `worksteal` mode hands each worker a contiguous share of the collected
tests and lets an idle worker take half of what another still has queued, from the end.
When a one-minute test sits at the end of the collection, one worker runs it alone while
the other idles: the suite's wall time is the sum of both. `order_slowest_first` sorts
the collected items by the recorded wall time of their module (longest first), keeping
each module's tests together and in their order (module-scoped fixtures, such as a
shared node, are then set up once per worker). Modules not in `MODULE_SECONDS` are fast
and keep their collection order, after the slow ones.

Refresh the table from a run such as
`pytest -q -p no:xdist --durations=0 tests/…` (the sum of each module's setup, call and
teardown times, rounded); only the order matters, not the exact numbers.
"""

from __future__ import annotations

from typing import Any

MODULE_SECONDS: dict[str, float] = {
    "tests/e2e/test_faults.py": 170,
}
"""Recorded wall time (s) of each slow test module, run alone on a quiet 2-core machine."""


def module_seconds(item: Any) -> float:
    """The recorded wall time of `item`'s module (0 when it is not in the table)."""
    return MODULE_SECONDS.get(item.nodeid.split("::", 1)[0], 0.0)


def order_slowest_first(items: list[Any]) -> None:
    """Sort `items` in place: slowest modules first, each module's tests kept together in
    their collection order; the sort is stable, so every worker collects the same order."""
    position = {id(item): index for index, item in enumerate(items)}
    first_of_module: dict[str, int] = {}
    for index, item in enumerate(items):
        first_of_module.setdefault(item.nodeid.split("::", 1)[0], index)
    items.sort(key=lambda item: (-module_seconds(item), first_of_module[item.nodeid.split("::", 1)[0]],
                                 position[id(item)]))
