"""A light client written from PROTOCOL.md §12 alone (R23, R26, R36, R37, R38).

Uses only `hashlib`, `msgpack`, `nacl` and `urllib`: nothing from `marketplace_tx`,
`consensus`, `client` or `node`, so that it checks the node against the page, not
against the node's own code. `verify_key` trusts only a genesis document: it walks the
validator-set change points of `GET /light/changes` from the genesis set, verifies the
target header's commit by the set it reaches, then folds the state proof up to that
header's `state_root`.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing

VOTE_TAG = b"marketchain/vote/v1\x00"
EMPTY = bytes(32)


class NotVerified(Exception):
    """Something the node sent does not check against the genesis."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def canonical(value: Any) -> bytes:
    """R1: msgpack, map keys sorted by UTF-8 bytes, bin for bytes."""

    def sort(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: sort(item[key]) for key in sorted(item, key=lambda key: key.encode())}
        if isinstance(item, list):
            return [sort(element) for element in item]
        return item

    return msgpack.packb(sort(value), use_bin_type=True)


def set_hash(addresses: list[bytes]) -> bytes:
    """R23: SHA-256(canonical(sorted list of addresses))."""
    return sha256(canonical(sorted(addresses)))


def get_json(base_url: str, path: str) -> Any:
    with urllib.request.urlopen(base_url + path, timeout=30) as response:
        return json.loads(response.read())


def decode_header(header_hex: str) -> tuple[dict[str, Any], bytes]:
    """A canonical header (R23) and its block hash; refuses non-canonical bytes (R2)."""
    raw = bytes.fromhex(header_hex)
    header = msgpack.unpackb(raw, raw=False)
    if not isinstance(header, dict) or canonical(header) != raw:
        raise NotVerified("the header is not canonical msgpack")
    return header, sha256(raw)


def check_commit(commit: dict[str, Any], chain_id: str, height: int, block_hash: bytes, members: list[bytes]) -> int:
    """R24, R26: more than 2/3 of `members`, each once, precommitted `block_hash`. Returns the signer count."""
    if commit["height"] != height or bytes.fromhex(commit["block_hash"]) != block_hash:
        raise NotVerified(f"the commit of height {height} is for another block")
    signed = {
        "block_hash": block_hash, "chain_id": chain_id, "height": height,
        "round": commit["round"], "type": "precommit",
    }
    message = VOTE_TAG + canonical(signed)
    signers: set[bytes] = set()
    for entry in commit["signatures"]:
        validator = bytes.fromhex(entry["validator"])
        if validator not in members or validator in signers:
            continue
        try:
            nacl.signing.VerifyKey(validator).verify(message, bytes.fromhex(entry["signature"]))
        except nacl.exceptions.BadSignatureError:
            raise NotVerified(f"a bad precommit signature at height {height}") from None
        signers.add(validator)
    if 3 * len(signers) <= 2 * len(members):
        raise NotVerified(f"only {len(signers)} of {len(members)} signed height {height}")
    return len(signers)


def change_points(base_url: str) -> list[dict[str, Any]]:
    """Every change point the node lists, following `next` (R38)."""
    points: list[dict[str, Any]] = []
    after = 0
    while True:
        page = get_json(base_url, f"/light/changes?after={after}&limit=100")
        points += page["changes"]
        if page["next"] is None:
            return points
        after = page["next"]


@dataclass
class TrustedHeader:
    """A header the client verified from genesis (R37)."""

    height: int
    block_hash: bytes
    state_root: bytes
    signers: int
    set_size: int
    sets_walked: int


def verify_header(base_url: str, genesis: dict[str, Any], height: int) -> TrustedHeader:
    """R37: from the genesis set through every change point below `height`, then the target."""
    chain_id = genesis["chain_id"]
    members = [bytes.fromhex(address) for address in genesis["validators"]]
    last = 0
    walked = 0
    for point in change_points(base_url):
        if point["height"] >= height:
            break
        if point["height"] <= last:
            raise NotVerified("change points are not strictly increasing")
        header, block_hash = decode_header(point["header"])
        if header["chain_id"] != chain_id or header["height"] != point["height"]:
            raise NotVerified("a change point of another chain or height")
        if header["validators_hash"] != set_hash(members):
            raise NotVerified(f"change point {point['height']} is not signed by the set the client holds")
        check_commit(point["commit"], chain_id, point["height"], block_hash, members)
        next_set = [bytes.fromhex(address) for address in point["next_validators"]]
        if set_hash(next_set) != header["next_validators_hash"]:
            raise NotVerified("the next set does not hash to next_validators_hash")
        members, last = next_set, point["height"]
        walked += 1
    raw_block = urllib.request.urlopen(f"{base_url}/blocks/{height}/raw", timeout=30).read()
    block = msgpack.unpackb(raw_block, raw=False)
    header_bytes = canonical(block["header"])
    header, block_hash = decode_header(header_bytes.hex())
    if header["chain_id"] != chain_id or header["height"] != height:
        raise NotVerified("the target header is of another chain or height")
    if header["validators_hash"] != set_hash(members):
        raise NotVerified("the target header is not signed by the set the client reached")
    signers = check_commit(get_json(base_url, f"/blocks/{height}/commit"), chain_id, height, block_hash, members)
    return TrustedHeader(height, block_hash, header["state_root"], signers, len(members), walked)


def bit(path: bytes, index: int) -> int:
    return (path[index // 8] >> (7 - index % 8)) & 1


def proof_root(proof: dict[str, Any]) -> bytes:
    """R36: fold the proof up to a root (shape errors raise NotVerified)."""
    key = bytes.fromhex(proof["key"])
    path = sha256(key)
    siblings = [bytes.fromhex(item) for item in proof["siblings"]]
    if len(siblings) > 256 or any(len(item) != 32 for item in siblings):
        raise NotVerified("bad siblings")
    if proof["value"] is not None and proof["leaf"] is not None:
        raise NotVerified("value and leaf both given")
    if proof["value"] is not None:
        current = sha256(b"\x00" + path + sha256(bytes.fromhex(proof["value"])))
    elif proof["leaf"] is not None:
        leaf_path = bytes.fromhex(proof["leaf"]["path"])
        value_hash = bytes.fromhex(proof["leaf"]["value_hash"])
        if len(leaf_path) != 32 or len(value_hash) != 32 or leaf_path == path:
            raise NotVerified("bad absence leaf")
        if any(bit(leaf_path, index) != bit(path, index) for index in range(len(siblings))):
            raise NotVerified("the absence leaf is off the key's path")
        current = sha256(b"\x00" + leaf_path + value_hash)
    else:
        current = EMPTY
    for index in range(len(siblings) - 1, -1, -1):
        if bit(path, index):
            current = sha256(b"\x01" + siblings[index] + current)
        else:
            current = sha256(b"\x01" + current + siblings[index])
    return current


def verify_key(base_url: str, genesis: dict[str, Any], proof_path: str, key: bytes) -> tuple[bytes | None, TrustedHeader]:
    """Fetch `proof_path` (an R38 proof endpoint), verify its header by R37 and the proof
    by R36 against that header's root; returns the proven value (None: proven absent)."""
    proof = get_json(base_url, proof_path)
    if bytes.fromhex(proof["key"]) != key:
        raise NotVerified("the proof is for another key")
    trusted = verify_header(base_url, genesis, proof["height"])
    if proof_root(proof) != trusted.state_root:
        raise NotVerified("the proof does not lead to the verified header's state_root")
    return (None if proof["value"] is None else bytes.fromhex(proof["value"])), trusted
