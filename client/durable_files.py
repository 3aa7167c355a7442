"""Durable file writes shared by the key store and the merchant agent: a whole file replaced
atomically (temporary file of mode 0600, fsync, rename, fsync of the directory), so that a
kill -9 at any point leaves either the old or the new file, never a torn one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
"""Permissions of every file written here (keys, a merchant's codes and state)."""


def write_atomically(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Replace `path` with `data` durably, mode exactly 0600 whatever the umask; without
    `overwrite`, an existing `path` raises FileExistsError and is left untouched. Any other
    failure raises the `OSError` as it is; the temporary file is removed."""
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            _rename_without_overwrite(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    fsync_directory(path.parent)


def _rename_without_overwrite(source: Path, target: Path) -> None:
    """Move `source` to `target`, raising FileExistsError if `target` exists."""
    try:
        os.link(source, target)  # atomic, and fails if `target` exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(source, target)
        return
    os.unlink(source)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform allows it)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
