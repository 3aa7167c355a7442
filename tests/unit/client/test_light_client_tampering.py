"""Every byte and field of what the node serves to the light client, tampered, is refused
(PROTOCOL R37): the header bytes of change points and of the target, the commit signatures,
the next sets, and the JSON shapes of `/light/changes`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from client.light_client import (
    MAX_HEADER_BYTES,
    MAX_VALIDATORS,
    ChangePoint,
    LightClientError,
    change_point_from_json,
    verify_header,
)
from marketplace_tx.chain.block import Commit, CommitSignature
from tests.unit.client.light_chain import (
    TOP,
    build_chain,
    change_point_json,
    change_points,
    genesis,
)

CHAIN = build_chain()
CHANGES = change_points(CHAIN)


def flipped(data: bytes, index: int) -> bytes:
    """`data` with byte `index` xor 0x01."""
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


def refused(changes: list[Any], header: bytes, commit: Commit, height: int = TOP) -> LightClientError:
    """The error of verifying; fails the test if it verified."""
    with pytest.raises(LightClientError) as caught:
        verify_header(genesis(), changes, header, commit, height)
    return caught.value


def test_every_byte_of_the_target_header_is_checked() -> None:
    block = CHAIN[TOP]
    for index in range(len(block.header)):
        error = refused(CHANGES, flipped(block.header, index), block.commit)
        assert error.step.startswith("target header"), (index, error)


def test_every_byte_of_every_change_point_header_is_checked() -> None:
    for position, change in enumerate(CHANGES):
        for index in range(len(change.header)):
            tampered = dataclasses.replace(change, header=flipped(change.header, index))
            given = [*CHANGES[:position], tampered, *CHANGES[position + 1:]]
            error = refused(given, CHAIN[TOP].header, CHAIN[TOP].commit)
            assert error.step == f"change point at height {change.height}", (index, error)


def tampered_signature(commit: Commit, which: int, index: int) -> Commit:
    """`commit` with byte `index` of signature `which` flipped."""
    signatures = list(commit.signatures)
    entry = signatures[which]
    signatures[which] = CommitSignature(entry.validator, flipped(entry.signature, index))
    return dataclasses.replace(commit, signatures=tuple(signatures))


def test_every_signature_byte_of_a_change_point_commit_is_checked() -> None:
    change = CHANGES[1]
    for which in range(len(change.commit.signatures)):
        for index in range(64):
            tampered = dataclasses.replace(change, commit=tampered_signature(change.commit, which, index))
            error = refused([CHANGES[0], tampered, CHANGES[2]], CHAIN[TOP].header, CHAIN[TOP].commit)
            assert "is invalid" in error.message, error


def test_every_signature_byte_of_the_target_commit_is_checked() -> None:
    commit = CHAIN[TOP].commit
    for which in range(len(commit.signatures)):
        for index in range(0, 64, 7):
            error = refused(CHANGES, CHAIN[TOP].header, tampered_signature(commit, which, index))
            assert error.step == f"target header at height {TOP}" and "is invalid" in error.message


def test_the_commit_fields_are_checked() -> None:
    commit = CHAIN[TOP].commit
    for change in ({"round": commit.round + 1}, {"height": TOP - 1},
                   {"block_hash": flipped(commit.block_hash, 0)}):
        refused(CHANGES, CHAIN[TOP].header, dataclasses.replace(commit, **change))


def test_every_byte_of_a_next_set_is_checked() -> None:
    change = CHANGES[2]
    for which in range(len(change.next_validators)):
        for index in range(32):
            addresses = list(change.next_validators)
            addresses[which] = flipped(addresses[which], index)
            tampered = dataclasses.replace(change, next_validators=tuple(addresses))
            error = refused([*CHANGES[:2], tampered], CHAIN[TOP].header, CHAIN[TOP].commit)
            assert error.step == "change point at height 9"


@pytest.mark.parametrize("mutation, message", [
    (lambda item: "not an object", "must be an object"),
    (lambda item: {**item, "height": "3"}, "height must be a positive integer"),
    (lambda item: {**item, "height": 0}, "height must be a positive integer"),
    (lambda item: {**item, "height": True}, "height must be a positive integer"),
    (lambda item: {**item, "header": "zz"}, "header is not hex"),
    (lambda item: {**item, "header": "00" * (MAX_HEADER_BYTES + 1)}, "header is over"),
    (lambda item: {**item, "next_validators": "ab"}, "next_validators must be a list"),
    (lambda item: {**item, "next_validators": ["ab"]}, "must be 32 bytes"),
    (lambda item: {**item, "next_validators": ["ab" * 32] * (MAX_VALIDATORS + 1)}, "at most 10000 addresses"),
    (lambda item: {**item, "commit": {**item["commit"], "signatures": [{}] * (MAX_VALIDATORS + 1)}},
     "more than 10000 signatures"),
    (lambda item: {**item, "commit": None}, "a commit must be"),
    (lambda item: {**item, "commit": {**item["commit"], "block_hash": "00"}}, "must be 32 bytes"),
    (lambda item: {**item, "commit": {**item["commit"], "round": -1}}, "unsigned integer"),
    (lambda item: {**item, "commit": {**item["commit"], "signatures": [1]}}, "non-object"),
    (lambda item: {**item, "commit": {**item["commit"], "signatures": item["commit"]["signatures"][::-1]}},
     "sorted by validator and unique"),
])
def test_malformed_change_points_are_refused_with_the_field(mutation: Any, message: str) -> None:
    good = change_point_json(CHANGES[0])
    with pytest.raises(LightClientError, match=message) as caught:
        change_point_from_json(mutation(good))
    assert caught.value.step == "change points"


def test_a_duplicated_signer_counts_once() -> None:
    commit = CHAIN[TOP].commit
    doubled = dataclasses.replace(commit, signatures=(commit.signatures[0],) * 4)
    error = refused(CHANGES, CHAIN[TOP].header, doubled)
    assert "sorted by validator and unique" in error.message


def test_a_header_that_is_not_canonical_is_refused() -> None:
    change = CHANGES[0]
    padded = ChangePoint(change.height, change.header + b"\x00", change.commit, change.next_validators)
    error = refused([padded, *CHANGES[1:]], CHAIN[TOP].header, CHAIN[TOP].commit)
    assert "not canonical msgpack" in error.message
