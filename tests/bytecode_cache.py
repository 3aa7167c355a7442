"""Compiled bytecode kept between the test suite's Python processes, outside the tree.

Where `PYTHONDONTWRITEBYTECODE` is set (the environment of this project's 2-core test
machines sets it), every Python process compiles every module it imports from source:
each pytest worker spends about 8 s of CPU of its collection compiling (and rewriting
the asserts of) the test modules, each `marketchain` CLI run about 0.13 s and each node
process about 0.35 s compiling the project's modules, and the suite starts hundreds. `keep_bytecode` lets this process and the
processes it starts write and read bytecode in one folder under the temporary
directory (`sys.pycache_prefix`, PEP 3147 paths mirrored there), never in the
repository. Python checks each cached file against its source's size and modification
time, so an edited module is compiled again. Nothing else changes: the same sources
run, and a `PYTHONPYCACHEPREFIX` set by the user is kept.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

PREFIX_VARIABLE = "PYTHONPYCACHEPREFIX"
"""Where Python reads and writes bytecode instead of `__pycache__` folders beside the sources."""

NO_BYTECODE_VARIABLE = "PYTHONDONTWRITEBYTECODE"
"""When set, Python writes no bytecode at all."""


def default_prefix() -> Path:
    """`TMPDIR/marketchain-pycache-UID`: one folder per user, shared by every run."""
    return Path(tempfile.gettempdir()) / f"marketchain-pycache-{os.getuid()}"


def keep_bytecode(environ: MutableMapping[str, str] = os.environ) -> None:
    """Write and read bytecode under a prefix folder, here and in the processes started
    from now on (through `environ`); nothing changes when bytecode is written already."""
    if not (sys.dont_write_bytecode or environ.get(NO_BYTECODE_VARIABLE)):
        return
    prefix = environ.get(PREFIX_VARIABLE) or str(default_prefix())
    Path(prefix).mkdir(mode=0o700, parents=True, exist_ok=True)
    environ[PREFIX_VARIABLE] = prefix
    environ.pop(NO_BYTECODE_VARIABLE, None)
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False
