"""The core's layers, as its package docstrings state them: primitives import nothing of
chain or rules, chain imports no rules, speedups imports only the primitives' errors and
limits, and nothing in the core or consensus builds more than constants at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

CORE = REPO_ROOT / "marketplace_tx"

MAY_IMPORT = {
    "primitives": {"marketplace_tx.primitives", "marketplace_tx.speedups"},
    "chain": {"marketplace_tx.primitives", "marketplace_tx.chain", "marketplace_tx.speedups"},
    "speedups": {"marketplace_tx.primitives.errors", "marketplace_tx.primitives.limits", "marketplace_tx.chain.transaction"},
}
"""For each layer, the core modules (or packages) its files may import from."""


def core_imports(path: Path) -> list[tuple[str, bool]]:
    """(module, only for type checking) for every `marketplace_tx` import of `path`."""
    tree = ast.parse(path.read_text())
    type_checking_lines = {
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for child in node.body
        for line in range(child.lineno, (child.end_lineno or child.lineno) + 1)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("marketplace_tx"):
            modules = [node.module] if node.module != "marketplace_tx" else [f"marketplace_tx.{alias.name}" for alias in node.names]
            found.extend((module, node.lineno in type_checking_lines) for module in modules)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, False) for alias in node.names if alias.name.startswith("marketplace_tx"))
    return found


def allowed(module: str, prefixes: set[str]) -> bool:
    """True when `module` is one of `prefixes` or inside one of them."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("layer", ["primitives", "chain"])
def test_lower_layers_do_not_import_higher_ones(layer: str) -> None:
    violations = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in sorted((CORE / layer).glob("*.py"))
        for module, _ in core_imports(path)
        if not allowed(module, MAY_IMPORT[layer])
    ]
    assert not violations, "\n".join(violations)


def test_speedups_imports_only_the_primitives_errors_and_limits() -> None:
    imports = core_imports(CORE / "speedups.py")
    assert {module for module, _ in imports} >= {"marketplace_tx.primitives.errors", "marketplace_tx.primitives.limits"}
    for module, type_checking_only in imports:
        assert module in MAY_IMPORT["speedups"], module
        if module == "marketplace_tx.chain.transaction":
            assert type_checking_only, "speedups names Transaction for type checking only"


def test_the_checks_see_a_violation() -> None:
    """The import reader finds a planted higher-layer import (so the tests above can fail)."""
    assert not allowed("marketplace_tx.rules.state", MAY_IMPORT["chain"])
    assert not allowed("marketplace_tx.chain.block", MAY_IMPORT["primitives"])
    assert allowed("marketplace_tx.speedups", MAY_IMPORT["primitives"])


CONSTANT_CALLS = {"frozenset", "type", "TypeVar", "object", "Lock", "compile", "digest", "sha256", "bytes", "encode", "sorted", "domain_tag", "VoteSet"}
"""Calls allowed at module level besides the module's own functions and classes: building
constants (no thread, no environment read, no I/O)."""


def module_level_calls(path: Path) -> set[str]:
    """The names of the functions `path` calls at import time, outside functions and classes."""
    tree = ast.parse(path.read_text())
    own = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    names = set()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                function = node.func
                names.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "?"))
    return names - own


@pytest.mark.parametrize("package", ["marketplace_tx", "consensus"])
def test_import_time_work_is_only_constants(package: str) -> None:
    unexpected = {
        f"{path.relative_to(REPO_ROOT)}: {sorted(module_level_calls(path) - CONSTANT_CALLS)}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if module_level_calls(path) - CONSTANT_CALLS
    }
    assert not unexpected, "\n".join(sorted(unexpected))



def test_the_readers_see_planted_violations(tmp_path: Path) -> None:
    """A pool or an environment read at import time, and a higher-layer import, are seen."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import os\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "from marketplace_tx.rules.state import State\n"
        "POOL = ThreadPoolExecutor()\nWORKERS = os.cpu_count()\n"
    )
    assert module_level_calls(planted) - CONSTANT_CALLS == {"ThreadPoolExecutor", "cpu_count"}
    assert core_imports(planted) == [("marketplace_tx.rules.state", False)]
