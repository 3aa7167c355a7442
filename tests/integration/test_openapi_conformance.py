"""The server answers as its OpenAPI document says (`GET /openapi.json`, PROTOCOL §10).

A short, deterministic schemathesis pass against a real node (its coverage phase: the
boundary values of every parameter and body, and undocumented methods; then a few fuzzed
cases per operation): every operation but the endless `/events` stream, every check (status codes and error bodies documented per
operation, response schemas and content types, schema-valid requests accepted and
schema-violating ones rejected, `Allow` on 405 answers). It must find nothing. The rules
JSON Schema cannot state are listed in tests/integration/schemathesis.toml.

A longer pass by hand (see docs/api.md): `schemathesis run URL/openapi.json --checks all
--exclude-path /events --config-file tests/integration/schemathesis.toml`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess
from tests.integration.signing_client import SigningClient

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
"""The schemathesis command of this environment (the `test` extra)."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""Per-operation settings: the rules the document can only state in words."""
MAX_EXAMPLES = 5
"""Generated cases per operation and phase: small, to stay within a minute on a loaded machine."""
SENDER = KeyPair.from_seed(hashlib.sha256(b"test_openapi_conformance/sender").digest())
RECIPIENT = KeyPair.from_seed(hashlib.sha256(b"test_openapi_conformance/recipient").digest())


def test_the_server_answers_as_its_openapi_document_says(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node", fund={SENDER.address: 10_000_000},
                     config={"http": {"rate_per_ip": 0}}) as node:
        client = SigningClient(node)
        for amount in (1, 2):  # blocks, transactions and an account for the responses to show
            client.ok(client.tx(SENDER, "transfer", to=RECIPIENT.address, amount=amount))
        command = [
            str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{node.url}/openapi.json",
            "--checks", "all", "--exclude-path", "/events", "--phases", "coverage,fuzzing",
            "--max-examples", str(MAX_EXAMPLES),
            "--generation-deterministic", "--workers", "1", "--no-color", "--request-timeout", "30",
        ]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, f"schemathesis found mismatches:\n{result.stdout[-12000:]}\n{result.stderr[-2000:]}"
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-4000:]
