"""docs/rules.md, the index rule → code → tests, cannot go stale.

It fails when a rule cited in the code has no section, when a section names code that
does not exist or a test file that does not exist, when an enforced rule names no code
or no test, and when code or docs cite a `docs/*.md` page that does not exist.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (this file is tests/unit/test_rules_index.py)."""

INDEX = ROOT / "docs" / "rules.md"
"""The rule index."""

RULE_COUNT = 41
"""PROTOCOL.md v2 numbers its rules R1 … R41."""

CODE_PACKAGES = ("marketplace_tx", "consensus", "mempool", "p2p", "node", "client")
"""Where rule citations in code are collected, and what a code reference may start with."""

SKIPPED_DIRECTORIES = {".venv", ".git", "build", "dist", "node_modules", "__pycache__"}
"""Directories that are not the project's own files."""

SECTION_HEADING = re.compile(r"^### R(\d+)\.")
"""A rule's section starts with `### R<n>. Title`."""

BACKTICKED = re.compile(r"`([^`]+)`")
"""Inline code spans of the index."""

CODE_REFERENCE = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
"""A dotted path: `package.module.function` or `package.module.Class.method`."""

TEST_REFERENCE = re.compile(r"^(tests/[A-Za-z0-9_/]+\.py)(?:::([A-Za-z_][A-Za-z0-9_:]*))?$")
"""A test file, optionally `::test_name` (or `::Class::test_name`)."""

NOT_IMPLEMENTED = "not implemented"
"""How a section says the rule has no code yet (with the issue that will build it)."""

RULE_CITATION = re.compile(r"\bR(\d+)\b")
"""A rule number cited in code: `R10`, `(R23, R24)`, `R25–R27` (both ends)."""

DOCS_CITATION = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)\b")
"""A citation of a page of docs/ by path."""

MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
"""A Markdown link to another page."""


@cache
def sections() -> dict[int, str]:
    """The text of each rule's section in the index, by rule number."""
    found: dict[int, str] = {}
    current: int | None = None
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        heading = SECTION_HEADING.match(line)
        if heading:
            current = int(heading.group(1))
            assert current not in found, f"R{current} has two sections in docs/rules.md"
            found[current] = ""
        elif line.startswith("#"):
            current = None
        elif current is not None:
            found[current] += line + "\n"
    return found


def references(text: str) -> tuple[list[str], list[str]]:
    """The code references and test references named in `text`."""
    code, tests = [], []
    for token in BACKTICKED.findall(text):
        if TEST_REFERENCE.match(token):
            tests.append(token)
        elif CODE_REFERENCE.match(token) and token.split(".")[0] in CODE_PACKAGES:
            code.append(token)
    return code, tests


def all_code_references() -> list[str]:
    """Every code reference of the index, once."""
    return sorted({name for text in sections().values() for name in references(text)[0]})


def all_test_references() -> list[str]:
    """Every test reference of the index, once."""
    return sorted({name for text in sections().values() for name in references(text)[1]})


def project_files(top: Path = ROOT) -> list[Path]:
    """Every file of the project under `top`, skipping .venv, .git and build output."""
    found = []
    for folder, folders, names in os.walk(top):
        folders[:] = [name for name in folders
                      if name not in SKIPPED_DIRECTORIES and not name.endswith(".egg-info")]
        found += [Path(folder) / name for name in names]
    return sorted(found)


def python_files(*tops: str) -> list[Path]:
    """The project's Python files under `tops` (all of them if none given)."""
    bases = [ROOT / top for top in tops] if tops else [ROOT]
    return [path for base in bases for path in project_files(base) if path.suffix == ".py"]


def rules_cited_in_code() -> dict[int, list[str]]:
    """Rule number → the files of the product packages that cite it."""
    cited: dict[int, list[str]] = {}
    for path in python_files(*CODE_PACKAGES):
        for number in sorted({int(n) for n in RULE_CITATION.findall(path.read_text(encoding="utf-8"))}):
            cited.setdefault(number, []).append(str(path.relative_to(ROOT)))
    return cited


def resolve(dotted: str) -> object:
    """Import the longest module prefix of `dotted` and walk the rest as attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: object = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue
            raise
        for attribute in parts[split:]:
            target = attribute_of(target, attribute, dotted)
        return target
    raise AssertionError(f"{dotted}: no such module")


def attribute_of(owner: object, name: str, dotted: str) -> object:
    """`owner.name`, also for dataclass or annotated fields without a class-level default."""
    if hasattr(owner, name):
        return getattr(owner, name)
    if isinstance(owner, type):
        if dataclasses.is_dataclass(owner) and name in {field.name for field in dataclasses.fields(owner)}:
            return name
        if name in getattr(owner, "__annotations__", {}):
            return name
    raise AssertionError(f"{dotted}: {owner!r} has no attribute {name!r}")


def test_every_rule_has_a_section() -> None:
    """R1 … R41 each have one section."""
    missing = [f"R{number}" for number in range(1, RULE_COUNT + 1) if number not in sections()]
    assert not missing, "docs/rules.md has no section for " + ", ".join(missing)


def test_every_rule_cited_in_code_is_indexed() -> None:
    """A rule number cited anywhere in the product code has its section in the index."""
    missing = [f"R{number} (cited in {', '.join(files)})"
               for number, files in sorted(rules_cited_in_code().items()) if number not in sections()]
    assert not missing, "rules cited in code but missing from docs/rules.md:\n" + "\n".join(missing)


def test_every_rule_cited_in_code_names_its_code() -> None:
    """A rule the code says it enforces is not listed as unimplemented without any code."""
    wrong = []
    for number in sorted(rules_cited_in_code()):
        text = sections().get(number, "")
        if text and not references(text)[0]:
            wrong.append(f"R{number}")
    assert not wrong, "rules cited in code whose section names no code: " + ", ".join(wrong)


RULES_LAYER = "marketplace_tx/rules"
"""The state machine's rules, one module per concept: every part of a rule there is indexed."""


def test_every_part_of_a_rule_in_the_rules_layer_is_indexed() -> None:
    """A rule spread over several modules of marketplace_tx/rules (R20, R21, …) names each
    of them: a module of the rules layer that cites R<n> appears in R<n>'s section."""
    missing = []
    for path in python_files(RULES_LAYER):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)  # a package: any module
        for number in sorted({int(n) for n in RULE_CITATION.findall(path.read_text(encoding="utf-8"))}):
            code = references(sections().get(number, ""))[0]
            if not any(name == module or name.startswith(module + ".") for name in code):
                missing.append(f"R{number}: {module}")
    assert not missing, "modules that cite a rule but are not in its section:\n" + "\n".join(missing)


@pytest.mark.parametrize("number", range(1, RULE_COUNT + 1), ids=lambda number: f"R{number}")
def test_each_rule_names_code_and_tests_or_says_it_is_not_implemented(number: int) -> None:
    """An enforced rule names where (code) and how it is checked (tests)."""
    text = sections().get(number)
    if text is None:
        pytest.fail(f"R{number} has no section")
    if NOT_IMPLEMENTED in text.lower() and not references(text)[1]:
        assert re.search(r"issue \d+", text), f"R{number}: say which issue will implement it"
        return
    code, tests = references(text)
    assert code, f"R{number}: the section names no enforcing code"
    assert tests, f"R{number}: the section names no test"


@pytest.mark.parametrize("dotted", all_code_references())
def test_indexed_code_exists(dotted: str) -> None:
    """Every function, class, method or constant the index names can be imported."""
    resolve(dotted)


@pytest.mark.parametrize("reference", all_test_references())
def test_indexed_tests_exist(reference: str) -> None:
    """Every test file the index names exists, and so does a named test in it."""
    match = TEST_REFERENCE.match(reference)
    assert match is not None
    path = ROOT / match.group(1)
    assert path.is_file(), f"{match.group(1)} does not exist"
    if match.group(2):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scope: list[ast.stmt] = list(tree.body)
        for name in match.group(2).split("::"):
            found = [item for item in scope
                     if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and item.name == name]
            assert found, f"{reference}: no {name} in {match.group(1)}"
            scope = list(getattr(found[0], "body", []))


def cited_pages() -> list[tuple[str, str]]:
    """(where, page) for every `docs/<page>.md` cited in Python files, docs/ and the README,
    and every relative Markdown link between pages of docs/ and the README."""
    found = []
    for path in python_files():
        for page in DOCS_CITATION.findall(path.read_text(encoding="utf-8")):
            found.append((str(path.relative_to(ROOT)), "docs/" + page))
    for page_path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page_path.read_text(encoding="utf-8")
        where = str(page_path.relative_to(ROOT))
        found += [(where, "docs/" + page) for page in DOCS_CITATION.findall(text)]
        for link in MARKDOWN_LINK.findall(text):
            if "://" in link:
                continue
            target = (page_path.parent / link).resolve()
            if target.is_relative_to(ROOT):
                found.append((where, str(target.relative_to(ROOT))))
    return found


def test_cited_docs_pages_exist() -> None:
    """No code comment, docstring or page points at a docs/ page that does not exist."""
    missing = sorted({f"{where} cites {page}" for where, page in cited_pages() if not (ROOT / page).is_file()})
    assert not missing, "\n".join(missing)
