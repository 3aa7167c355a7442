"""The docs name only things that exist: repository files, docs pages, code by dotted path.

Every page of docs/ and the README is read. A path with a folder (`node/http/app.py`,
`tests/unit/test_architecture.py`, `docs/state.md`) must exist from the repository
root (or from the page's folder, for relative links); a bare Python file name
(`codec.py`, unless it is a reader's own script inside a command line) must be the
name of some file of the project; a bare test name
(`test_multinode`) must be a test module or a test of tests/; a dotted path in code
spans (`node.http.app.build_app`) must import.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.unit.test_rules_index import project_files, resolve

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (this file is tests/unit/test_docs_links.py)."""

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""The documentation pages checked."""

FILE_PATH = re.compile(r"(?<![\w./:-])((?:\.\./|[\w.-]+/)*[\w-]+\.py|(?:\.\./)*docs/[\w.-]+\.md)\b")
"""A Python file (with or without folders) or a docs page, not part of a URL."""

CODE_SPAN = re.compile(r"`([^`\s]+)`")
"""An inline code span."""

DOTTED_PATH = re.compile(r"^(marketplace_tx|consensus|mempool|p2p|node|client)(\.[A-Za-z_][A-Za-z0-9_]*)+$")
"""A dotted path into the project's packages."""

TEST_NAME = re.compile(r"(?<![\w/.])(test_[a-z0-9_]+\*?)(?![\w*])")
"""A test module or test function named without its folder (`test_multinode`,
`test_codec.py`), or a pattern of them (`test_consensus_core_*.py`)."""

FILE_SUFFIXES = {"log", "json", "toml", "md", "py", "txt", "html", "js", "css", "db", "pid"}
"""Last components that make a dotted name a file name (`node.log`), not code."""


@cache
def known_test_names() -> frozenset[str]:
    """The stems of the test modules and the names of every function and class in tests/."""
    names = set()
    for path in project_files(ROOT / "tests"):
        if path.suffix != ".py":
            continue
        names.add(path.stem)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:  # that file's own tests fail; its module name still counts
            continue
        for item in ast.walk(tree):
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(item.name)
    return frozenset(names)


def is_known_test(name: str) -> bool:
    """Whether `name` (or, ending in `*`, some name it is a prefix of) is a known test."""
    if name.endswith("*"):
        return any(known.startswith(name[:-1]) for known in known_test_names())
    return name in known_test_names()


@cache
def project_file_names() -> frozenset[str]:
    """The names of every file of the project (not .venv, .git)."""
    return frozenset(path.name for path in project_files())


def page_id(page: Path) -> str:
    """A short test id for a page."""
    return str(page.relative_to(ROOT))


def path_exists(page: Path, named: str, file_names: frozenset[str]) -> bool:
    """Whether `named`, as written on `page`, is a file of the project."""
    if "/" not in named:
        return named in file_names
    for base in (ROOT, page.parent):
        target = (base / named).resolve()
        if target.is_relative_to(ROOT) and target.is_file():
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_files_exist(page: Path) -> None:
    """Every repository file a page names exists under that name."""
    file_names = project_file_names()
    missing = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for match in FILE_PATH.finditer(line):
            named = match.group(1)
            if "/" not in named and inside_longer_code_span(line, match.start(), match.end()):
                continue  # a reader's own script in a command line: `python sale.py`
            if not path_exists(page, named, file_names):
                missing.append(f"{page_id(page)}:{number}: {named}")
    assert not missing, "\n".join(missing)


def inside_longer_code_span(line: str, start: int, end: int) -> bool:
    """Whether line[start:end] sits in a code span that holds more than that name."""
    for span in re.finditer(r"`[^`]*`", line):
        if span.start() < start and end < span.end():
            return span.group(0).strip("`") != line[start:end]
    return False


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_tests_exist(page: Path) -> None:
    """Every test module or test a page names by its bare name (`test_multinode`) exists."""
    missing = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        missing += [f"{page_id(page)}:{number}: {name}"
                    for name in TEST_NAME.findall(line) if not is_known_test(name)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_code_exists(page: Path) -> None:
    """Every dotted path into the project's packages that a page names imports."""
    missing = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for span in CODE_SPAN.findall(line):
            if not DOTTED_PATH.match(span) or span.rsplit(".", 1)[1] in FILE_SUFFIXES:
                continue
            try:
                resolve(span)
            except (AssertionError, ImportError) as error:
                missing.append(f"{page_id(page)}:{number}: {span} ({error})")
    assert not missing, "\n".join(missing)
