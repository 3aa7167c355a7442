"""Editing a node's config.toml with node/config.py's own TOML writer (`render_toml`)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def edit_config(home: Path, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Set options of `HOME/config.toml`, e.g. `{"http": {"max_body_bytes": 4096}}`.

    The file is read with tomllib and written back with `node.config.render_toml`, the
    writer `marketchain init` uses; imported here, not at module import, so that a test
    of an independent client can manage processes without the project's code.
    """
    from node.config import render_toml

    path = home / "config.toml"
    values = tomllib.loads(path.read_text())
    for section, options in overrides.items():
        values.setdefault(section, {}).update(options)
    path.write_text(render_toml(values))
