"""A chain of real headers and commits, signed with real keys, whose validator set changes
three times: the light client's tests (R37) verify and tamper with it.

Sets by the heights they sign: 1-3 genesis {0,1,2,3}; 4-6 {1,2,3,4} (validator 4 added, 0
removed); 7-9 {1,2,3} (3 removed, e.g. by evidence); 10-12 {1,2,3,5,6}. Change points (a
header whose next set differs) are therefore 3, 6 and 9.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from client.light_client import ChangePoint
from consensus.commit import sign_commit
from marketplace_tx.chain.block import Commit, Header
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.validators import validators_hash

CHAIN_ID = "light-client-test"
"""The chain id of the test chain."""

KEYS = sorted((KeyPair.from_seed(hashlib.sha256(f"light-{index}".encode()).digest()) for index in range(7)),
              key=lambda key: key.address)
"""Seven validator keys, sorted by address."""

SETS = {1: (0, 1, 2, 3), 4: (1, 2, 3, 4), 7: (1, 2, 3), 10: (1, 2, 3, 5, 6)}
"""The first height each set signs → indexes into KEYS."""

TOP = 12
"""The last height of the chain."""

CHANGE_HEIGHTS = (3, 6, 9)
"""The change points of the chain."""


def set_keys(height: int) -> list[KeyPair]:
    """The keys of the set that signs `height`."""
    first = max(start for start in SETS if start <= height)
    return sorted((KEYS[index] for index in SETS[first]), key=lambda key: key.address)


def addresses(keys: list[KeyPair]) -> tuple[bytes, ...]:
    """The sorted addresses of `keys`."""
    return tuple(sorted(key.address for key in keys))


def genesis(chain_id: str = CHAIN_ID) -> Genesis:
    """The trust anchor: the set of height 1."""
    validators = addresses(set_keys(1))
    return Genesis(chain_id=chain_id, genesis_time=1, validators=validators,
                   accounts=tuple(GenesisAccount(address, 0, ("registrar",)) for address in validators),
                   params=Params())


def filler(label: str, height: int) -> bytes:
    """A 32-byte value for the header fields the light client does not interpret."""
    return hashlib.sha256(f"{label}-{height}".encode()).digest()


def make_header(height: int, **overrides: Any) -> Header:
    """The header of `height`: validators_hash of its signing set, next_validators_hash of the next."""
    fields = {
        "chain_id": CHAIN_ID, "height": height, "time": 1000 + height, "prev_hash": filler("prev", height),
        "tx_root": filler("tx", height), "results_root": filler("results", height),
        "state_root": filler("state", height),
        "validators_hash": validators_hash(addresses(set_keys(height))),
        "next_validators_hash": validators_hash(addresses(set_keys(height + 1))),
        "proposer": set_keys(height)[0].address, "last_commit_hash": filler("commit", height),
        "evidence_hash": filler("evidence", height),
    }
    fields.update(overrides)
    return Header(**fields)


def header_bytes(header: Header) -> bytes:
    """Canonical bytes of `header`."""
    return codec.encode(header.to_map())


def commit_for(header: Header, keys: list[KeyPair] | None = None, chain_id: str = CHAIN_ID) -> Commit:
    """A commit of `header` by `keys` (default: all of its signing set)."""
    return sign_commit(keys if keys is not None else set_keys(header.height), chain_id, header.height, 0,
                       header.hash)


@dataclass(frozen=True)
class Block:
    """One block of the test chain: header bytes and commit."""

    header: bytes
    """Canonical header bytes."""
    commit: Commit
    """All of its set's precommits."""


def build_chain(state_root: bytes | None = None) -> dict[int, Block]:
    """Every block 1..TOP; all with `state_root` when given."""
    chain = {}
    for height in range(1, TOP + 1):
        header = make_header(height, **({"state_root": state_root} if state_root is not None else {}))
        chain[height] = Block(header_bytes(header), commit_for(header))
    return chain


def change_points(chain: dict[int, Block]) -> list[ChangePoint]:
    """The chain's change points, decoded."""
    return [ChangePoint(height, chain[height].header, chain[height].commit, addresses(set_keys(height + 1)))
            for height in CHANGE_HEIGHTS]


def commit_json(commit: Commit) -> dict[str, Any]:
    """A commit as `/blocks/{h}/commit` serves it."""
    return {"block_hash": commit.block_hash.hex(), "height": commit.height, "round": commit.round,
            "signatures": [{"signature": entry.signature.hex(), "validator": entry.validator.hex()}
                           for entry in commit.signatures]}


def change_point_json(change: ChangePoint) -> dict[str, Any]:
    """A change point as `/light/changes` serves it."""
    return {"height": change.height, "header": change.header.hex(), "commit": commit_json(change.commit),
            "next_validators": [address.hex() for address in change.next_validators]}
