"""The test suite's own speed-ups (tests/slow_first.py, tests/bytecode_cache.py) do what
they say and nothing else: every test still runs, each module's tests stay together."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.bytecode_cache import NO_BYTECODE_VARIABLE, PREFIX_VARIABLE, keep_bytecode
from tests.slow_first import (
    MODULE_SECONDS,
    PROCESS_MODULE_SECONDS,
    module_seconds,
    order_slowest_first,
)


def _items(*node_ids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(nodeid=node_id) for node_id in node_ids]


def test_slowest_modules_go_first_with_their_tests_together_and_in_order() -> None:
    slowest = max(MODULE_SECONDS, key=MODULE_SECONDS.__getitem__)
    items = _items("tests/unit/test_a.py::one", f"{slowest}::first", "tests/unit/test_a.py::two",
                   "tests/integration/test_new.py::x", f"{slowest}::second", "tests/unit/test_b.py::three")
    order_slowest_first(items)  # type: ignore[arg-type]
    assert [item.nodeid for item in items] == [
        f"{slowest}::first", f"{slowest}::second", "tests/integration/test_new.py::x",
        "tests/unit/test_a.py::one", "tests/unit/test_a.py::two", "tests/unit/test_b.py::three",
    ]
    assert module_seconds(items[2]) == PROCESS_MODULE_SECONDS and module_seconds(items[3]) == 0


def test_the_table_names_only_existing_modules() -> None:
    from tests.paths import REPO_ROOT

    missing = [module for module in MODULE_SECONDS if not (REPO_ROOT / module).is_file()]
    assert not missing, f"tests/slow_first.py names modules that do not exist: {missing}"


def test_bytecode_goes_to_a_prefix_folder_when_writing_it_was_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    environ = {NO_BYTECODE_VARIABLE: "1", PREFIX_VARIABLE: str(tmp_path / "cache")}
    keep_bytecode(environ)
    assert environ == {PREFIX_VARIABLE: str(tmp_path / "cache")}
    assert (tmp_path / "cache").is_dir()
    assert sys.pycache_prefix == str(tmp_path / "cache") and not sys.dont_write_bytecode


def test_bytecode_settings_are_left_alone_when_it_is_written_already(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    environ: dict[str, str] = {}
    keep_bytecode(environ)
    assert environ == {} and sys.pycache_prefix is None
