"""Fuzzing of key files (docs/security.md): a key file of any content is refused with
KeystoreError, never echoing a secret, or yields the address it holds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.keystore import KeystoreError, load_key_file, read_key_info
from marketplace_tx.primitives.crypto import KeyPair
from tests.fuzz.strategies import (
    ANY_TEXT,
    COUNTS,
    SENDER,
    fuzz_settings,
    iteration_report,
    key_documents,
)

CONFIG_HOME: dict[str, Any] = {}
"""One scratch directory, reused across examples."""

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_keystore.py")


@fuzz_settings(400)
@given(document=key_documents(), passphrase=st.none() | st.just("right passphrase") | ANY_TEXT,
       raw=st.none() | st.binary(max_size=60))
def test_keystore_files(tmp_path_factory: pytest.TempPathFactory, document: Any, passphrase: str | None,
                        raw: bytes | None) -> None:
    """A key file of any content is refused with KeystoreError, never echoing a secret, or
    yields exactly the address the file states (and, for a loaded key, one that its seed makes)."""
    COUNTS["keystore load_key_file / read_key_info"] += 1
    home = CONFIG_HOME.setdefault("keys", tmp_path_factory.mktemp("keystore-fuzz"))
    path = home / "key.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(document, default=bytes.hex))
    for load in (lambda: load_key_file(path, passphrase), lambda: read_key_info(path)):
        try:
            loaded = load()
        except KeystoreError as error:
            assert SENDER.seed.hex() not in error.message
            continue
        stated = json.loads(path.read_bytes())["address"]
        assert loaded.address == bytes.fromhex(stated)
        if isinstance(loaded, KeyPair):
            assert KeyPair.from_seed(loaded.seed).address == loaded.address
