"""The dependency rules of STYLE.md: the pure core never imports the edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "marketplace_tx": {"node", "p2p", "mempool", "consensus", "cli", "aiohttp", "plyvel", "asyncio", "socket", "time", "random"},
    "consensus": {"node", "p2p", "mempool", "cli", "aiohttp", "plyvel", "asyncio", "socket", "time", "random"},
    "mempool": {"node", "p2p", "cli", "aiohttp", "plyvel"},
    "p2p": {"node", "cli"},
    "node": {"cli"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for item in ast.walk(tree):
        if isinstance(item, ast.Import):
            names.update(alias.name.split(".")[0] for alias in item.names)
        elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
            names.add(item.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_dependency_rules(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    violations = []
    for path in files:
        bad = imported_modules(path) & FORBIDDEN[package]
        if bad:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


P2P_MAY_USE = {"marketplace_tx.primitives.codec", "marketplace_tx.primitives.crypto", "marketplace_tx.primitives.errors"}
"""p2p knows message kinds, not their meaning: no marketplace rules (STYLE.md)."""


def test_p2p_uses_no_marketplace_rules() -> None:
    violations = []
    for path in sorted((ROOT / "p2p").rglob("*.py")):
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, ast.ImportFrom) and item.module and item.module.startswith("marketplace_tx"):
                if item.module not in P2P_MAY_USE:
                    violations.append(f"{path.relative_to(ROOT)} imports {item.module}")
    assert not violations, "\n".join(violations)


def test_top_level_layout() -> None:
    for name in ("node", "consensus", "p2p", "mempool", "marketplace_tx", "configs", "tests", "docs", "bench"):
        assert (ROOT / name).is_dir(), name
    for name in ("cli.py", "pyproject.toml", "README.md", ".ci/run"):
        assert (ROOT / name).is_file(), name
