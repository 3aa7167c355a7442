"""The light client (PROTOCOL R37) on a chain whose validator set changed three times:
what verifies, and every way of lying about the change points that it must refuse."""

from __future__ import annotations

import dataclasses

import pytest

from client.light_client import (
    ChangePoint,
    LightClientError,
    change_point_from_json,
    commit_from_json,
    genesis_set,
    verify_header,
)
from marketplace_tx.rules.validators import validators_hash
from tests.unit.client.light_chain import (
    CHANGE_HEIGHTS,
    KEYS,
    TOP,
    addresses,
    build_chain,
    change_point_json,
    change_points,
    commit_for,
    commit_json,
    genesis,
    header_bytes,
    make_header,
    set_keys,
)

CHAIN = build_chain()
CHANGES = change_points(CHAIN)


def test_every_height_verifies_through_the_set_changes() -> None:
    for height in range(1, TOP + 1):
        block = CHAIN[height]
        verified = verify_header(genesis(), CHANGES, block.header, block.commit, height)
        assert verified.height == height and verified.header.height == height
        assert verified.validators == addresses(set_keys(height))
        assert verified.signers == addresses(set_keys(height))
        assert verified.block_hash == make_header(height).hash


def test_a_target_that_is_a_change_point_is_signed_by_the_set_before_it() -> None:
    for height in CHANGE_HEIGHTS:
        verified = verify_header(genesis(), CHANGES, CHAIN[height].header, CHAIN[height].commit, height)
        assert verified.validators == addresses(set_keys(height))
        assert verified.validators != addresses(set_keys(height + 1))


def test_the_json_of_light_changes_is_accepted_and_round_trips() -> None:
    as_json = [change_point_json(change) for change in CHANGES]
    assert [change_point_from_json(item) for item in as_json] == CHANGES
    assert commit_from_json(commit_json(CHAIN[5].commit)) == CHAIN[5].commit
    verified = verify_header(genesis(), as_json, CHAIN[TOP].header, CHAIN[TOP].commit, TOP)
    assert verified.height == TOP


def test_change_points_at_or_above_the_target_are_ignored() -> None:
    verified = verify_header(genesis(), CHANGES, CHAIN[6].header, CHAIN[6].commit, 6)
    assert verified.validators == addresses(set_keys(6))
    # a garbage change point above the target is not even decoded as a header
    junk = ChangePoint(11, b"junk", CHAIN[11].commit, ())
    assert verify_header(genesis(), [*CHANGES, junk], CHAIN[10].header, CHAIN[10].commit, 10).height == 10


def test_the_header_height_defaults_to_the_decoded_one() -> None:
    assert verify_header(genesis(), CHANGES, CHAIN[8].header, CHAIN[8].commit).height == 8


def test_a_skipped_change_point_is_detected_by_validators_hash() -> None:
    for skipped in range(len(CHANGES)):
        given = CHANGES[:skipped] + CHANGES[skipped + 1:]
        with pytest.raises(LightClientError, match="validators_hash is not the hash of the trusted set"):
            verify_header(genesis(), given, CHAIN[TOP].header, CHAIN[TOP].commit, TOP)


def test_no_change_points_at_all_fails_past_the_first_change() -> None:
    with pytest.raises(LightClientError, match="target header at height 4: validators_hash"):
        verify_header(genesis(), [], CHAIN[4].header, CHAIN[4].commit, 4)


@pytest.mark.parametrize("order", [
    [1, 0, 2],  # out of order
    [0, 0, 1, 2],  # duplicated
    [0, 1, 1, 2],
])
def test_change_points_must_come_strictly_increasing(order: list[int]) -> None:
    with pytest.raises(LightClientError, match="strictly increasing"):
        verify_header(genesis(), [CHANGES[index] for index in order], CHAIN[TOP].header, CHAIN[TOP].commit, TOP)


def test_a_header_that_is_not_a_change_point_is_refused_as_one() -> None:
    fake = ChangePoint(2, CHAIN[2].header, CHAIN[2].commit, addresses(set_keys(3)))
    with pytest.raises(LightClientError, match="change point at height 2: the header is not a change point"):
        verify_header(genesis(), [fake, *CHANGES], CHAIN[TOP].header, CHAIN[TOP].commit, TOP)


def test_a_change_point_listed_at_another_height_is_refused() -> None:
    moved = dataclasses.replace(CHANGES[0], height=2)
    with pytest.raises(LightClientError, match="change point at height 2: the header is of height 3, not 2"):
        verify_header(genesis(), [moved, *CHANGES[1:]], CHAIN[TOP].header, CHAIN[TOP].commit, TOP)


def test_a_wrong_next_set_is_refused() -> None:
    wrong = dataclasses.replace(CHANGES[1], next_validators=addresses(set_keys(1)))
    with pytest.raises(LightClientError, match="does not hash to the header's next_validators_hash"):
        verify_header(genesis(), [CHANGES[0], wrong, CHANGES[2]], CHAIN[TOP].header, CHAIN[TOP].commit, TOP)
    unsorted = dataclasses.replace(CHANGES[0], next_validators=tuple(reversed(CHANGES[0].next_validators)))
    with pytest.raises(LightClientError, match="sorted list of unique"):
        verify_header(genesis(), [unsorted], CHAIN[4].header, CHAIN[4].commit, 4)


def test_a_commit_by_the_wrong_set_is_refused() -> None:
    # block 8 is signed by {1,2,3}; a commit by the genesis set {0,1,2,3} is not by S
    wrong = commit_for(make_header(8), set_keys(1))
    with pytest.raises(LightClientError, match="target header at height 8: the commit does not verify .* not in "
                                               "the set"):
        verify_header(genesis(), CHANGES, CHAIN[8].header, wrong, 8)
    # a forged chain: a set nobody trusted signs a header that claims a change to itself
    intruders = [KEYS[5], KEYS[6]]
    forged = make_header(3, next_validators_hash=validators_hash(addresses(intruders)))
    forged_change = ChangePoint(3, header_bytes(forged), commit_for(forged, intruders), addresses(intruders))
    with pytest.raises(LightClientError, match="change point at height 3: the commit does not verify"):
        verify_header(genesis(), [forged_change], CHAIN[4].header, CHAIN[4].commit, 4)


def test_two_thirds_exactly_is_not_enough() -> None:
    # the set of block 10 has 5 members: 3 signers are 3/5 < 2/3 + ; 4 are enough
    header = make_header(10)
    too_few = commit_for(header, set_keys(10)[:3])
    with pytest.raises(LightClientError, match="more than 2/3"):
        verify_header(genesis(), CHANGES, CHAIN[10].header, too_few, 10)
    enough = commit_for(header, set_keys(10)[:4])
    assert len(verify_header(genesis(), CHANGES, CHAIN[10].header, enough, 10).signers) == 4


def test_another_chain_or_another_height_is_refused() -> None:
    with pytest.raises(LightClientError, match="the header is of chain 'light-client-test', the genesis of 'other'"):
        verify_header(genesis("other"), CHANGES, CHAIN[2].header, CHAIN[2].commit, 2)
    with pytest.raises(LightClientError, match="the header is of height 7, not 8"):
        verify_header(genesis(), CHANGES, CHAIN[7].header, CHAIN[7].commit, 8)
    with pytest.raises(LightClientError, match="commit is for another block"):
        verify_header(genesis(), CHANGES, CHAIN[7].header, CHAIN[8].commit, 7)


def test_the_genesis_set_signs_from_height_one() -> None:
    trusted = genesis_set(genesis())
    assert trusted.first_height == 1 and trusted.validators == addresses(set_keys(1))
