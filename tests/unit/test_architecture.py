"""The dependency rules of STYLE.md and docs/architecture.md, and the layout's checkable facts.

Imports are read from the source with `ast` (nothing is imported), relative imports are
resolved against the importing module, and `from a.b import c` counts as importing
`a.b.c`, so that a rule can name a module (`aiohttp.web`, `client.keystore`,
`marketplace_tx.primitives`) whichever import form a file uses.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (this file is tests/unit/test_architecture.py)."""

PRODUCT_PACKAGES = ("marketplace_tx", "consensus", "mempool", "p2p", "node", "client")
"""The packages shipped in the wheel (pyproject.toml), besides the top-level `cli.py`."""

SKIPPED_DIRECTORIES = {".venv", ".git", "build", "dist", "node_modules", "__pycache__"}
"""Directories that are not the project's own Python files."""

PURE_CORE_FORBIDDEN = {
    "node", "p2p", "mempool", "client", "cli", "aiohttp", "plyvel",
    "asyncio", "socket", "time", "random", "secrets",
}
"""What the pure, deterministic core may never import: the edges, I/O, a clock, randomness."""

FORBIDDEN = {
    "marketplace_tx": PURE_CORE_FORBIDDEN | {"consensus"},
    "consensus": PURE_CORE_FORBIDDEN,
    "mempool": {"node", "p2p", "client", "cli", "aiohttp", "plyvel"},
    "p2p": {"node", "mempool", "consensus", "client", "cli"},
    "client": {"node", "p2p", "mempool", "cli", "plyvel"},
    "node": {"cli"},
}
"""Top-level modules each package may not import (STYLE.md, docs/architecture.md).

`client` may import `marketplace_tx` and `consensus` (both pure: `client/verification.py`
checks commit signatures with `consensus.commit`), talk HTTP and start node processes,
but never import `node`."""

P2P_MARKETPLACE_PREFIX = "marketplace_tx.primitives"
"""p2p knows message kinds, not their meaning: of the core it may use only the primitives."""

NODE_MAY_USE_FROM_CLIENT = "client.keystore"
"""The one client module a node shares: the key file format (node keys, validator keys)."""

WEB_SERVER_MODULE = "aiohttp.web"
"""aiohttp's web server: imported only under node/http/."""

WEB_SERVER_HOME = "node/http/"
"""The only place allowed to import `WEB_SERVER_MODULE`."""

MAX_FILE_LINES = 600
"""No Python file of the project, tests included, is longer (STYLE.md)."""

MAX_CLI_LINES = 150
"""`cli.py` only assembles the command groups."""


@dataclass(frozen=True)
class SourceFile:
    """One Python file of the project and the modules it imports."""

    path: Path
    """Absolute path of the file."""
    relative: str
    """Path from the repository root, with forward slashes."""
    module: str
    """Dotted module name (`node.http.app`, `tests.unit.test_architecture`, `cli`)."""
    imports: frozenset[str]
    """Every imported dotted name, relative imports resolved, `from a import b` as `a.b`."""


def module_name(relative: Path) -> str:
    """The dotted module name of a file given by its path from the root."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module named by `from <level dots><name> import ...` inside `module`."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> frozenset[str]:
    """Every module (or module attribute) that `tree` imports, at any depth of the file."""
    names: set[str] = set()
    for item in ast.walk(tree):
        if isinstance(item, ast.Import):
            names.update(alias.name for alias in item.names)
        elif isinstance(item, ast.ImportFrom):
            source = item.module or ""
            if item.level:
                source = resolve_relative(module, is_package, item.level, item.module)
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in item.names)
        elif isinstance(item, ast.Call) and dynamic_import_target(item):
            names.add(dynamic_import_target(item))
        elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name):
            if item.value.id == "aiohttp" and item.attr == "web":
                names.add("aiohttp.web")
    return frozenset(names)


def dynamic_import_target(call: ast.Call) -> str:
    """The constant module name of `importlib.import_module("x")` or `__import__("x")`, or ""."""
    function = call.func
    called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    if called not in ("import_module", "__import__") or not call.args:
        return ""
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""


def python_files() -> list[Path]:
    """Every Python file of the project: product code, cli.py, tests, bench (not .venv)."""
    found = []
    for folder, folders, names in os.walk(ROOT):
        folders[:] = [name for name in folders
                      if name not in SKIPPED_DIRECTORIES and not name.endswith(".egg-info")]
        found += [Path(folder) / name for name in names if name.endswith(".py")]
    return sorted(found)


@cache
def source_files() -> tuple[SourceFile, ...]:
    """Every project Python file, parsed once per test session."""
    files = []
    for path in python_files():
        relative = path.relative_to(ROOT)
        module = module_name(relative)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imports_of(tree, module, path.name == "__init__.py")
        files.append(SourceFile(path, relative.as_posix(), module, imports))
    return tuple(files)


def files_of(package: str) -> list[SourceFile]:
    """The source files of one top-level package (`node` also holds `node/http/`)."""
    return [file for file in source_files() if file.relative.startswith(package + "/")]


def product_files() -> list[SourceFile]:
    """Files that ship: the product packages and `cli.py` (not tests, bench or docs)."""
    return [file for file in source_files()
            if file.relative == "cli.py" or file.relative.split("/")[0] in PRODUCT_PACKAGES]


def is_under(name: str, prefix: str) -> bool:
    """Whether dotted `name` is `prefix` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def top_level(name: str) -> str:
    """The first component of a dotted name."""
    return name.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_dependency_rules(package: str) -> None:
    """Each package imports none of the top-level modules STYLE.md forbids it."""
    files = files_of(package)
    assert files, f"{package}/ has no Python files"
    violations = []
    for file in files:
        bad = {top_level(name) for name in file.imports} & FORBIDDEN[package]
        if bad:
            violations.append(f"{file.relative} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_p2p_uses_only_the_core_primitives() -> None:
    """p2p knows message kinds, not their meaning: codec, crypto, errors, Merkle only."""
    violations = [
        f"{file.relative} imports {name}"
        for file in files_of("p2p")
        for name in sorted(file.imports)
        if top_level(name) == "marketplace_tx"
        and not is_under(name, P2P_MARKETPLACE_PREFIX)
        and name != "marketplace_tx"  # the parent of `from marketplace_tx.primitives import x`
    ]
    assert not violations, "\n".join(violations)


def test_node_uses_only_the_keystore_from_client() -> None:
    """A node shares one thing with user-side code: the key file format."""
    violations = [
        f"{file.relative} imports {name}"
        for file in files_of("node")
        for name in sorted(file.imports)
        if top_level(name) == "client"
        and not is_under(name, NODE_MAY_USE_FROM_CLIENT)
        and name != "client"  # the parent of `from client import keystore`
    ]
    assert not violations, "\n".join(violations)


def test_only_node_http_imports_the_web_server() -> None:
    """aiohttp's web server (`aiohttp.web`) is imported only under node/http/."""
    violations = [
        f"{file.relative} imports {name}"
        for file in product_files()
        if not file.relative.startswith(WEB_SERVER_HOME)
        for name in sorted(file.imports)
        if is_under(name, WEB_SERVER_MODULE)
    ]
    assert not violations, "\n".join(violations)


def test_nothing_imports_cli() -> None:
    """`cli.py` is only an entry point (pyproject's `marketchain = "cli:main"`, `python -m cli`).

    No module imports it, tests and benchmarks included: the command groups live in
    importable modules of their own."""
    violations = [
        f"{file.relative} imports {name}"
        for file in source_files()
        if file.relative != "cli.py"
        for name in sorted(file.imports)
        if top_level(name) == "cli"
    ]
    assert not violations, "\n".join(violations)


def node_modules_reachable_from(roots: set[str]) -> set[str]:
    """Modules under node/ that `roots` import, directly or through other node modules."""
    by_module = {file.module: file for file in files_of("node")}
    reached: set[str] = set()
    pending = [root for root in roots if root in by_module]
    while pending:
        module = pending.pop()
        if module in reached:
            continue
        reached.add(module)
        for name in by_module[module].imports:
            parts = name.split(".")
            for length in range(len(parts), 0, -1):
                candidate = ".".join(parts[:length])
                if candidate in by_module:
                    pending.append(candidate)
                    break
    return reached


def test_node_has_no_module_only_the_cli_uses() -> None:
    """Every module under node/ belongs to the running node: it is reached from `node.node`
    or from the node's own commands (`init`, `node start`, `config show`), never only from
    `cli.py` or `client/`."""
    node_files = files_of("node")
    roots = {"node.node"} | {file.module for file in node_files if "command" in file.module}
    reached = node_modules_reachable_from(roots)
    strays = sorted(file.relative for file in node_files
                    if file.module not in reached and not file.relative.endswith("__init__.py"))
    assert not strays, "node/ modules that the running node never imports: " + ", ".join(strays)


def test_cli_is_a_short_entry_point() -> None:
    """`cli.py` assembles the command groups and does nothing else."""
    lines = len((ROOT / "cli.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_CLI_LINES, f"cli.py has {lines} lines (at most {MAX_CLI_LINES})"


def test_no_python_file_over_the_size_limit() -> None:
    """Files of one concept: none over 600 lines, tests and benchmarks included."""
    too_long = []
    for path in python_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, "\n".join(too_long)


NODE_ANY_PARAMETER = re.compile(r"\bnode\s*:\s*['\"]?(typing\.)?Any\b")
"""A parameter or field typed `node: Any`: the god object handed around untyped."""


def test_no_untyped_node_parameter() -> None:
    """Components receive narrow typed dependencies, never `node: Any`."""
    violations = []
    for file in product_files():
        for number, line in enumerate(file.path.read_text(encoding="utf-8").splitlines(), 1):
            if NODE_ANY_PARAMETER.search(line):
                violations.append(f"{file.relative}:{number}: {line.strip()}")
    assert not violations, "\n".join(violations)


RETIRED_ADMISSION_NAMES = ("def " + "precheck", "add_" + "checked")
"""The old admission entry points (R10 now has one pipeline); spelled in two parts so that
this file does not match itself."""


def project_text_files() -> list[Path]:
    """Every text file of the project (what `rg` searches): not .venv, .git or binaries."""
    found = []
    for folder, folders, names in os.walk(ROOT):
        folders[:] = [name for name in folders
                      if name not in SKIPPED_DIRECTORIES and not name.endswith(".egg-info")]
        for name in names:
            path = Path(folder) / name
            with path.open("rb") as handle:
                if b"\0" not in handle.read(8192):
                    found.append(path)
    return sorted(found)


def test_retired_admission_entry_points_are_gone() -> None:
    """No file of the project (code, tests, docs) defines a `precheck*` function or names
    the old checked-add entry point: a search for `RETIRED_ADMISSION_NAMES` finds nothing."""
    violations = []
    for path in project_text_files():
        text = path.read_bytes().decode("utf-8", errors="replace")
        for name in RETIRED_ADMISSION_NAMES:
            if name in text:
                violations.append(f"{path.relative_to(ROOT)} contains {name!r}")
    assert not violations, "\n".join(violations)


def test_top_level_layout() -> None:
    """The rooms a newcomer sees at the top of the tree."""
    for name in (*PRODUCT_PACKAGES, "node/http", "configs", "tests", "docs", "bench"):
        assert (ROOT / name).is_dir(), name
    for name in ("unit", "integration", "e2e", "fuzz"):
        assert (ROOT / "tests" / name).is_dir(), f"tests/{name}"
    for name in ("cli.py", "pyproject.toml", "README.md", ".ci/run", "docs/rules.md"):
        assert (ROOT / name).is_file(), name
