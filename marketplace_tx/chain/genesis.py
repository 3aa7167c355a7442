"""The genesis document (PROTOCOL R33, §9); the state it creates is written by
`rules.genesis_state.apply_genesis`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.roles import ROLES
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import InvalidGenesis

MAX_SUPPLY = 2**53
"""Total supply must stay below this so that JSON numbers are exact (R33)."""


@dataclass(frozen=True)
class GenesisAccount:
    """An account that exists at genesis."""

    address: bytes
    """The account's address."""
    balance: int
    """Its µMKT at genesis."""
    roles: tuple[str, ...] = ()
    """Roles it holds from the start, sorted."""


@dataclass(frozen=True)
class Genesis:
    """The genesis document: the chain's identity, first state and parameters (R33)."""

    chain_id: str
    """The chain's id; every transaction and handshake names it."""
    genesis_time: int
    """ms since the Unix epoch; block 1's time must be later (R28)."""
    validators: tuple[bytes, ...]
    """The first validator set, sorted by address; each holds `registrar`."""
    accounts: tuple[GenesisAccount, ...] = ()
    """Funded accounts, sorted by address."""
    params: Params = field(default_factory=Params)
    """Every chain parameter (§9)."""

    def to_map(self) -> dict[str, Any]:
        """The canonical genesis map (R33)."""
        return {
            "accounts": [
                {"address": account.address, "balance": account.balance, "roles": list(account.roles)}
                for account in self.accounts
            ],
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "params": self.params.to_map(),
            "validators": list(self.validators),
        }

    @cached_property
    def hash(self) -> bytes:
        """SHA-256 of the canonical genesis bytes; checked in every handshake (R33). Computed
        once per (immutable) document: `/status` reports it, and a genesis may hold many accounts."""
        return hashlib.sha256(codec.encode(self.to_map())).digest()

    def to_json(self) -> dict[str, Any]:
        """The genesis as JSON (bytes as lowercase hex, R5)."""
        value = self.to_map()
        value["accounts"] = [
            {**account, "address": account["address"].hex()} for account in value["accounts"]
        ]
        value["validators"] = [address.hex() for address in value["validators"]]
        return value

    @classmethod
    def from_json(cls, value: Any) -> Genesis:
        """Parse and validate a JSON genesis document (R33)."""
        if not isinstance(value, dict):
            raise InvalidGenesis("genesis must be an object")
        expected = {"accounts", "chain_id", "genesis_time", "params", "validators"}
        if set(value) != expected:
            raise InvalidGenesis(f"genesis must have exactly the keys {', '.join(sorted(expected))}")
        accounts = value["accounts"]
        if not isinstance(accounts, list):
            raise InvalidGenesis("accounts must be a list")
        parsed_accounts = []
        for position, account in enumerate(accounts):
            if not isinstance(account, dict) or set(account) != {"address", "balance", "roles"}:
                raise InvalidGenesis(f"accounts[{position}] needs address, balance and roles")
            roles = account["roles"]
            if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
                raise InvalidGenesis(f"accounts[{position}].roles must be a list of role names")
            parsed_accounts.append(
                GenesisAccount(
                    _address(account["address"], f"accounts[{position}].address"),
                    account["balance"],
                    tuple(roles),
                )
            )
        validators = value["validators"]
        if not isinstance(validators, list):
            raise InvalidGenesis("validators must be a list")
        genesis = cls(
            chain_id=value["chain_id"],
            genesis_time=value["genesis_time"],
            validators=tuple(
                _address(item, f"validators[{position}]") for position, item in enumerate(validators)
            ),
            accounts=tuple(parsed_accounts),
            params=Params.from_map(value["params"]),
        )
        genesis.validate()
        return genesis

    def validate(self) -> None:
        """Raise `InvalidGenesis` unless every rule of R33 holds."""
        try:
            chain_id_bytes = self.chain_id.encode() if isinstance(self.chain_id, str) else None
        except UnicodeEncodeError:
            chain_id_bytes = None
        if chain_id_bytes is None or not 1 <= len(chain_id_bytes) <= 64:
            raise InvalidGenesis("chain_id must be 1..64 bytes of valid UTF-8 text")
        if isinstance(self.genesis_time, bool) or not isinstance(self.genesis_time, int) or not 0 <= self.genesis_time < 2**63:
            raise InvalidGenesis("genesis_time must be a non-negative integer (ms)")
        if not self.validators:
            raise InvalidGenesis("validators must not be empty")
        if list(self.validators) != sorted(set(self.validators)):
            raise InvalidGenesis("validators must be sorted by address and unique")
        addresses = [account.address for account in self.accounts]
        if addresses != sorted(set(addresses)):
            raise InvalidGenesis("accounts must be sorted by address and unique")
        supply = 0
        for account in self.accounts:
            if isinstance(account.balance, bool) or not isinstance(account.balance, int) or account.balance < 0:
                raise InvalidGenesis(f"balance of {account.address.hex()} must be a non-negative integer")
            supply += account.balance
            if list(account.roles) != sorted(set(account.roles)):
                raise InvalidGenesis(f"roles of {account.address.hex()} must be sorted and unique")
            for role in account.roles:
                if role not in ROLES:
                    raise InvalidGenesis(f"unknown role {role!r} for {account.address.hex()}")
        if supply >= MAX_SUPPLY:
            raise InvalidGenesis("total supply must stay below 2^53 µMKT")

    def total_supply(self) -> int:
        """The sum of genesis balances, conserved forever (R17)."""
        return sum(account.balance for account in self.accounts)


def _address(value: Any, field_name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidGenesis(f"{field_name} must be 64 lowercase hex characters")
    try:
        address = bytes.fromhex(value)
    except ValueError:
        raise InvalidGenesis(f"{field_name} must be 64 lowercase hex characters") from None
    if address.hex() != value:
        raise InvalidGenesis(f"{field_name} must be lowercase hex")
    return address


def genesis_from_json(text: str | bytes, source: str) -> Genesis:
    """Parse and validate a genesis document from its JSON text (R33); `source` names it in errors.

    Bytes are read as UTF-8. Raises InvalidGenesis with `SOURCE is not valid JSON: ...` for text
    that is not JSON, and `SOURCE: MESSAGE` for a document that breaks R33. Reading the file is
    left to each edge (`node.home.read_genesis`, `client.verification.read_genesis_file`).
    """
    try:
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidGenesis(f"{source} is not valid JSON: {error}") from None
    try:
        return Genesis.from_json(value)
    except InvalidGenesis as error:
        raise InvalidGenesis(f"{source}: {error.message}") from None
