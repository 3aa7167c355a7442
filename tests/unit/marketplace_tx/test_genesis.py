"""The genesis document and the state it creates (PROTOCOL R33, §9)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from marketplace_tx.chain.genesis import MAX_SUPPLY, Genesis, genesis_from_json
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import InvalidGenesis
from marketplace_tx.primitives.sparse_merkle import subtree_root
from marketplace_tx.rules.accounts import Account, has_role, load_account, roles_of
from marketplace_tx.rules.state import MemoryStateReader, State
from marketplace_tx.rules.state_keys import account_key
from marketplace_tx.rules.state_transition import genesis_changes
from marketplace_tx.rules.validators import load_validators


def address(name: str) -> str:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest()).address.hex()


VALIDATORS = sorted([address("validator-1"), address("validator-2")])
ACCOUNTS = sorted([address("alice"), address("bob"), address("carol")])


def valid_json() -> dict[str, Any]:
    return {
        "accounts": [
            {"address": ACCOUNTS[0], "balance": 1_000_000, "roles": ["merchant"]},
            {"address": ACCOUNTS[1], "balance": 0, "roles": []},
            {"address": ACCOUNTS[2], "balance": 42, "roles": ["arbiter", "carrier"]},
        ],
        "chain_id": "marketchain-test",
        "genesis_time": 1_700_000_000_000,
        "params": Params().to_map(),
        "validators": list(VALIDATORS),
    }


def mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    value = copy.deepcopy(valid_json())
    change(value)
    return value


def test_valid_document_parses() -> None:
    genesis = Genesis.from_json(valid_json())
    assert genesis.validators == tuple(bytes.fromhex(v) for v in VALIDATORS)
    assert [a.address.hex() for a in genesis.accounts] == ACCOUNTS
    assert genesis.accounts[2].roles == ("arbiter", "carrier")
    assert genesis.params == Params()
    assert genesis.total_supply() == 1_000_042


def test_genesis_from_json_text_or_bytes_names_its_source_in_errors() -> None:
    text = json.dumps(valid_json())
    assert genesis_from_json(text, "g.json") == genesis_from_json(text.encode(), "g.json") == Genesis.from_json(
        valid_json())
    for bad in ("{", b"\xff{}"):
        with pytest.raises(InvalidGenesis, match="^invalid_genesis: g.json is not valid JSON: "):
            genesis_from_json(bad, "g.json")
    with pytest.raises(InvalidGenesis, match="^invalid_genesis: g.json: genesis must be an object$"):
        genesis_from_json("[]", "g.json")


def _set_param(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["params"][name] = value

    return change


INVALID = {
    "unsorted validators": (lambda g: g.__setitem__("validators", VALIDATORS[::-1]), "validators must be sorted"),
    "duplicate validators": (lambda g: g.__setitem__("validators", [VALIDATORS[0]] * 2), "validators must be sorted"),
    "no validators": (lambda g: g.__setitem__("validators", []), "validators must not be empty"),
    "unsorted accounts": (lambda g: g["accounts"].reverse(), "accounts must be sorted"),
    "duplicate accounts": (
        lambda g: g["accounts"].insert(1, dict(g["accounts"][0], balance=1)),
        "accounts must be sorted",
    ),
    "unknown role": (lambda g: g["accounts"][0].__setitem__("roles", ["king"]), "unknown role 'king'"),
    "unsorted roles": (lambda g: g["accounts"][2].__setitem__("roles", ["carrier", "arbiter"]), "roles"),
    "duplicate roles": (lambda g: g["accounts"][2].__setitem__("roles", ["arbiter", "arbiter"]), "roles"),
    "role not text": (lambda g: g["accounts"][0].__setitem__("roles", [1]), "roles"),
    "missing param": (lambda g: g["params"].pop("min_fee"), "missing min_fee"),
    "unknown param": (_set_param("max_gas", 1), "unknown max_gas"),
    "param of wrong type": (_set_param("min_fee", "10"), "params.min_fee"),
    "param bool for int": (_set_param("min_fee", True), "params.min_fee"),
    "open_merchants not bool": (_set_param("open_merchants", 1), "open_merchants"),
    "arbiter fee above 100%": (_set_param("arbiter_fee_bps", 10001), "arbiter_fee_bps"),
    "supply 2^53": (
        lambda g: g["accounts"][0].__setitem__("balance", MAX_SUPPLY - 42),
        "supply",
    ),
    "supply far above 2^53": (
        lambda g: [a.__setitem__("balance", 2**63) for a in g["accounts"]],
        "supply",
    ),
    "negative balance": (lambda g: g["accounts"][1].__setitem__("balance", -1), "balance"),
    "bool balance": (lambda g: g["accounts"][1].__setitem__("balance", True), "balance"),
    "uppercase validator hex": (
        lambda g: g.__setitem__("validators", [VALIDATORS[0].upper(), VALIDATORS[1]]),
        "lowercase",
    ),
    "uppercase account hex": (
        lambda g: g["accounts"][0].__setitem__("address", ACCOUNTS[0].upper()),
        "lowercase",
    ),
    "short address": (lambda g: g["accounts"][0].__setitem__("address", ACCOUNTS[0][:62]), "64"),
    "non-hex address": (lambda g: g["accounts"][0].__setitem__("address", "zz" * 32), "hex"),
    "missing key": (lambda g: g.pop("genesis_time"), "exactly the keys"),
    "extra key": (lambda g: g.__setitem__("initial_height", 1), "exactly the keys"),
    "account missing roles": (lambda g: g["accounts"][0].pop("roles"), "accounts[0]"),
    "empty chain_id": (lambda g: g.__setitem__("chain_id", ""), "chain_id"),
    "negative genesis_time": (lambda g: g.__setitem__("genesis_time", -1), "genesis_time"),
    "accounts not a list": (lambda g: g.__setitem__("accounts", {}), "accounts"),
}


@pytest.mark.parametrize(("change", "message"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_documents(change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(InvalidGenesis) as error:
        Genesis.from_json(mutated(change))
    assert error.value.code == "invalid_genesis"
    assert message in error.value.message


def test_supply_just_below_2_53_is_accepted() -> None:
    document = mutated(lambda g: g["accounts"][0].__setitem__("balance", MAX_SUPPLY - 43))
    assert Genesis.from_json(document).total_supply() == MAX_SUPPLY - 1


def test_json_round_trip_and_hash_stability() -> None:
    genesis = Genesis.from_json(valid_json())
    assert genesis.to_json() == valid_json()
    again = Genesis.from_json(json.loads(json.dumps(genesis.to_json())))
    assert again == genesis
    assert again.hash == genesis.hash
    assert genesis.hash == hashlib.sha256(codec.encode(genesis.to_map())).digest()
    # JSON key order does not matter: the hash is over canonical msgpack
    shuffled = json.loads(json.dumps(valid_json(), sort_keys=True))
    shuffled = dict(reversed(list(shuffled.items())))
    shuffled["params"] = dict(reversed(list(shuffled["params"].items())))
    assert Genesis.from_json(shuffled).hash == genesis.hash


def test_canonical_genesis_map_has_r33_shape() -> None:
    genesis = Genesis.from_json(valid_json())
    decoded = codec.decode(codec.encode(genesis.to_map()))
    assert list(decoded) == ["accounts", "chain_id", "genesis_time", "params", "validators"]
    assert decoded["accounts"][0] == {
        "address": bytes.fromhex(ACCOUNTS[0]),
        "balance": 1_000_000,
        "roles": ["merchant"],
    }
    assert set(decoded["params"]) == set(Params().to_map())
    assert len(decoded["params"]) == 14


@pytest.mark.parametrize(
    "change",
    [
        lambda g: g.__setitem__("chain_id", "marketchain-other"),
        lambda g: g.__setitem__("genesis_time", 1_700_000_000_001),
        lambda g: g["accounts"][2].__setitem__("balance", 43),
        lambda g: g["accounts"][1].__setitem__("roles", ["producer"]),
        _set_param("min_fee", 11),
        _set_param("open_merchants", True),
        lambda g: g.__setitem__("validators", VALIDATORS[:1]),
    ],
)
def test_every_field_is_under_the_hash(change: Callable[[dict[str, Any]], None]) -> None:
    assert Genesis.from_json(mutated(change)).hash != Genesis.from_json(valid_json()).hash


def test_genesis_state() -> None:
    genesis = Genesis.from_json(valid_json())
    tip, changes = genesis_changes(genesis)
    state = State(MemoryStateReader(changes))
    for validator in genesis.validators:
        assert has_role(state, validator, "registrar")
        assert roles_of(state, validator) == ["registrar"]
    alice, bob, carol = (bytes.fromhex(a) for a in ACCOUNTS)
    assert roles_of(state, alice) == ["merchant"]
    assert roles_of(state, bob) == []
    assert roles_of(state, carol) == ["arbiter", "carrier"]
    assert load_account(state, alice) == Account(1_000_000, 0)
    assert load_account(state, carol) == Account(42, 0)
    assert load_account(state, bob) == Account(0, 0)
    # an all-zero account has no record at all (this shapes the state root)
    assert state.get(account_key(bob)) is None
    assert state.get(account_key(carol)) is not None
    assert load_validators(state) == genesis.validators
    assert tip.height == 0
    assert tip.block_hash == genesis.hash
    assert tip.time == genesis.genesis_time
    assert tip.state_root == subtree_root(changes.items())  # R35
    assert state.get(b"y" + (1).to_bytes(8, "big")) is not None  # R35: genesis holds `v` and `y ‖ 1`
    # deterministic
    assert genesis_changes(Genesis.from_json(valid_json())) == (tip, changes)


def test_validator_with_an_account_role_is_still_registrar() -> None:
    document = valid_json()
    document["accounts"] = sorted(
        document["accounts"] + [{"address": VALIDATORS[0], "balance": 5, "roles": ["merchant"]}],
        key=lambda a: a["address"],
    )
    _, changes = genesis_changes(Genesis.from_json(document))
    state = State(MemoryStateReader(changes))
    assert roles_of(state, bytes.fromhex(VALIDATORS[0])) == ["merchant", "registrar"]
