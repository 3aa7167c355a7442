"""Suite-wide hooks: bytecode kept between processes, slowest modules first, and the
iteration counts that fuzz and crash tests print.

Compiled bytecode is written to and read from a folder under the temporary directory by
the pytest processes and every process they start, even where `PYTHONDONTWRITEBYTECODE`
is set (tests/bytecode_cache.py): workers and node processes then skip compiling.

The collected tests are ordered longest module first (tests/slow_first.py), so that
`make test`'s pytest workers do not end with one of them running a minute-long
test alone.

pytest hides the output of passing tests. The crash-consistency and fuzz tests print
their seeds and iteration counts, so their captured output is repeated in a section of
the terminal summary.
"""

from __future__ import annotations

from typing import Any

from tests.bytecode_cache import keep_bytecode
from tests.slow_first import order_slowest_first

keep_bytecode()

REPORTED_FILES = (
    "test_crash_consistency.py",
    "test_fuzz_codec.py",
    "test_fuzz_transactions.py",
    "test_fuzz_blocks_votes.py",
    "test_fuzz_genesis_config.py",
    "test_fuzz_p2p.py",
    "test_fuzz_keystore.py",
    "test_fuzz_http.py",
)
"""Test files whose printed output (seeds, iteration counts) goes into the summary."""

_collected: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Run the slowest test modules first (tests/slow_first.py)."""
    order_slowest_first(items)


def pytest_runtest_logreport(report: Any) -> None:
    """Keep the captured stdout of the reported files' tests (the last phase holds it all)."""
    if report.nodeid.split("::")[0].endswith(REPORTED_FILES) and report.capstdout.strip():
        _collected[report.nodeid] = report.capstdout.strip()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the fuzz and crash tests reported."""
    if _collected:
        terminalreporter.section("fuzz and crash-consistency iterations")
        for text in _collected.values():
            terminalreporter.write_line(text)
