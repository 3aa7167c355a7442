"""The light client (PROTOCOL R37) as the client uses it: the checks are
`consensus/light_client.py` (pure, shared with the node's state sync); here are the JSON
shapes of `/light/changes` and `/blocks/{h}/commit` (R38) and `verify_header` taking them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensus.light_client import (
    MAX_HEADER_BYTES,
    MAX_VALIDATORS,
    LightClientError,
    TrustedSet,
    VerifiedHeader,
    advance,
    decode_header,
    genesis_set,
    relevant_changes,
    verify_target,
)
from consensus.light_client import verify_header as verify_decoded_header
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives.errors import InvalidBlock

__all__ = [
    "MAX_HEADER_BYTES", "MAX_VALIDATORS", "ChangePoint", "LightClientError", "TrustedSet", "VerifiedHeader",
    "advance", "change_point_from_json", "commit_from_json", "decode_header", "genesis_set",
    "relevant_changes", "verify_header", "verify_target",
]


def verify_header(genesis: Genesis, changes: Sequence[ChangePoint | dict[str, Any]], header_bytes: bytes,
                  commit: Commit, height: int | None = None) -> VerifiedHeader:
    """Verify the header of `header_bytes` by R37 from `genesis` through `changes`:
    decoded `ChangePoint`s or the JSON objects of `/light/changes` (consensus/light_client.py
    has the checks). Raises `LightClientError` naming the failed step."""
    decoded = [change if isinstance(change, ChangePoint) else change_point_from_json(change) for change in changes]
    return verify_decoded_header(genesis, decoded, header_bytes, commit, height)


# --- JSON shapes of /light/changes and /blocks/{h}/commit (R38) ------------------------------------


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    """Bytes from lowercase hex text, optionally of an exact size."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be hex text")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} is not hex") from None
    if size is not None and len(data) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(data)}")
    return data


def commit_from_json(value: Any) -> Commit:
    """A commit from the JSON of `/blocks/{h}/commit` (`{height, round, block_hash, signatures}`).

    Raises `ValueError` (with the field) for any shape error.
    """
    if not isinstance(value, dict) or not isinstance(value.get("signatures"), list):
        raise ValueError("a commit must be {height, round, block_hash, signatures: [...]}")
    if len(value["signatures"]) > MAX_VALIDATORS:
        raise ValueError(f"a commit holds more than {MAX_VALIDATORS} signatures")
    signatures = []
    for entry in value["signatures"]:
        if not isinstance(entry, dict):
            raise ValueError("commit.signatures holds a non-object")
        signatures.append({"signature": _hex(entry.get("signature"), "commit signature", 64),
                           "validator": _hex(entry.get("validator"), "commit validator", 32)})
    try:
        return Commit.from_map({"block_hash": _hex(value.get("block_hash"), "commit.block_hash", 32),
                                "height": value.get("height"), "round": value.get("round"),
                                "signatures": signatures})
    except InvalidBlock as error:
        raise ValueError(error.message) from None


def change_point_from_json(value: Any) -> ChangePoint:
    """One entry of `/light/changes`: `{height, header: hex, commit, next_validators: [hex]}`.

    Raises `LightClientError` (step `change points`) for any shape error.
    """
    try:
        if not isinstance(value, dict):
            raise ValueError("a change point must be an object")
        height = value.get("height")
        if isinstance(height, bool) or not isinstance(height, int) or height < 1:
            raise ValueError("height must be a positive integer")
        header = _hex(value.get("header"), "header")
        if len(header) > MAX_HEADER_BYTES:
            raise ValueError(f"header is over {MAX_HEADER_BYTES} bytes")
        listed = value.get("next_validators")
        if not isinstance(listed, list) or len(listed) > MAX_VALIDATORS:
            raise ValueError(f"next_validators must be a list of at most {MAX_VALIDATORS} addresses")
        next_validators = tuple(_hex(item, "next_validators entry", 32) for item in listed)
        return ChangePoint(height, header, commit_from_json(value.get("commit")), next_validators)
    except ValueError as error:
        raise LightClientError("change points", f"malformed change point: {error}") from None
