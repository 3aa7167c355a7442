"""A node home's permissions (issue 13), checked before `node start` loads it: decided as
OpenSSH's StrictModes and GnuPG do. What others may only read is tightened with a warning;
what group or others may write is refused, naming the file and the `chmod` that fixes it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.config import ConfigError
from node.home import check_home_permissions, init_home


def mode_of(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh plain node home."""
    init_home(tmp_path / "home")
    return tmp_path / "home"


def test_a_new_home_passes_without_a_warning(home: Path) -> None:
    assert check_home_permissions(home) == []


def test_modes_that_let_others_read_are_tightened_with_a_warning(home: Path) -> None:
    os.chmod(home, 0o755)
    os.chmod(home / "data", 0o755)
    os.chmod(home / "validator_key.json", 0o644)
    warnings = check_home_permissions(home)
    assert mode_of(home) == mode_of(home / "data") == 0o700 and mode_of(home / "validator_key.json") == 0o600
    assert len(warnings) == 3 and f"{home / 'validator_key.json'} was readable by others (mode 644)" in warnings[2]
    assert check_home_permissions(home) == []


def test_a_missing_data_directory_is_created_0700(home: Path) -> None:
    os.rmdir(home / "data")
    assert check_home_permissions(home) == [] and mode_of(home / "data") == 0o700


@pytest.mark.parametrize("name, mode", [
    ("", 0o770), ("node_key.json", 0o620), ("validator_key.json", 0o602), ("genesis.json", 0o646),
])
def test_what_group_or_others_may_write_is_refused(home: Path, name: str, mode: int) -> None:
    os.chmod(home / name, mode)
    with pytest.raises(ConfigError, match=f"is writable by group or others \\(mode {oct(mode)[2:]}\\).*chmod"):
        check_home_permissions(home)
    assert mode_of(home / name) == mode  # nothing is changed: the operator checks first
