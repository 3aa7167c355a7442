"""The SDK example of docs/sdk.md runs as written against a real node process.

The first ```python block after "## A whole sale in one script" is extracted from the
document and run as a merchant's script would be (`python -c`), with the node's URL in
MARKETCHAIN_NODE and the validator's key (the genesis registrar) in MARKETCHAIN_KEY.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client.formatting import format_amount
from tests.e2e.node_process import NodeProcess
from tests.paths import REPO_ROOT

SDK_DOCUMENT = REPO_ROOT / "docs" / "sdk.md"
"""Where the example lives."""

EXAMPLE_SECTION = "## A whole sale in one script"
"""The heading the example follows."""

SCRIPT_SECONDS = 300
"""Deadline of the whole script: a dozen transactions, each waiting for a block on a busy machine."""


def example_code() -> str:
    """The example's code: the first python block after its heading."""
    text = SDK_DOCUMENT.read_text(encoding="utf-8")
    section = text[text.index(EXAMPLE_SECTION):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {EXAMPLE_SECTION!r} in {SDK_DOCUMENT}"
    return match.group(1)


def test_the_example_is_complete_python() -> None:
    code = example_code()
    compile(code, str(SDK_DOCUMENT), "exec")
    assert "from client import" in code and "send_and_wait" in code


@pytest.mark.integration
def test_the_sdk_example_sells_through_a_real_node(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node") as node:
        completed = subprocess.run(
            [sys.executable, "-c", example_code()],
            cwd=tmp_path,
            env={**os.environ, "MARKETCHAIN_NODE": node.url,
                 "MARKETCHAIN_KEY": str(node.home / "validator_key.json"),
                 "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=SCRIPT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
        assert completed.returncode == 0, node.describe(f"the example failed:\n{completed.stdout}\n{completed.stderr}")
        min_fee = node.status()["min_fee"]
    lines = completed.stdout.splitlines()
    merchant_fees = 4 * min_fee  # shop_create, listing_create, order_accept, order_ship
    assert lines == [
        f"escrow {format_amount(25_000_000)}",
        "order completed",
        "stock 8",
        f"merchant {format_amount(1_000_000_000 + 25_000_000 - merchant_fees)}",
    ], completed.stdout
