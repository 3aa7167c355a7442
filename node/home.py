"""A node's home directory: config, keys, genesis and data (`marketchain init`).

Key files use the format of `client.keystore`, the one client module a node imports:
node and validator keys are the same plain key files a user's tools read and write.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from client.keystore import KeystoreError, load_key_file, write_plain_key
from marketplace_tx.chain.genesis import Genesis, GenesisAccount, genesis_from_json
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import InvalidGenesis
from node.config import (
    CONFIG_FILE,
    DATA_DIRECTORY,
    GENESIS_FILE,
    NODE_KEY_FILE,
    VALIDATOR_KEY_FILE,
    ConfigError,
    HttpConfig,
    NodeConfig,
    Override,
    P2pConfig,
    effective_config,
    render_config,
)

DEFAULT_VALIDATOR_BALANCE = 1_000_000 * 1_000_000
"""µMKT given to the validator of a single-node genesis made by `init` (1,000,000 MKT)."""


@dataclass(frozen=True)
class Home:
    """Everything a node loads from its home directory."""

    path: Path
    """The home directory."""
    config: NodeConfig
    """Parsed `config.toml`."""
    genesis: Genesis
    """Parsed `genesis.json`."""
    node_key: KeyPair
    """The node's identity key (P2P handshakes, `/status` node_id)."""
    validator_key: KeyPair | None
    """The validator's signing key, if this home has one."""

    @property
    def data_directory(self) -> Path:
        """Where LevelDB lives."""
        return self.path / DATA_DIRECTORY


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write `genesis.json` (pretty JSON, bytes as hex)."""
    _write_atomically(path, json.dumps(genesis.to_json(), indent=2, sort_keys=True) + "\n")


def read_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file (R33)."""
    try:
        return genesis_from_json(path.read_bytes(), source=str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except InvalidGenesis as error:
        raise ConfigError(error.message) from None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def single_validator_genesis(
    validator: bytes, chain_id: str, params: Params, accounts: dict[bytes, int] | None = None
) -> Genesis:
    """A genesis with one authority, funded, plus any extra funded accounts."""
    balances = {validator: DEFAULT_VALIDATOR_BALANCE, **(accounts or {})}
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time=int(time.time() * 1000),
        validators=(validator,),
        accounts=tuple(
            GenesisAccount(address, balance, ("registrar",) if address == validator else ())
            for address, balance in sorted(balances.items())
        ),
        params=params,
    )
    genesis.validate()
    return genesis


def init_home(
    path: Path,
    chain_id: str = "marketchain-local",
    genesis: Genesis | None = None,
    params: Params | None = None,
    http: HttpConfig | None = None,
    p2p: P2pConfig | None = None,
    moniker: str = "node",
    validator_key: KeyPair | None = None,
    node_key: KeyPair | None = None,
    accounts: dict[bytes, int] | None = None,
) -> Home:
    """Create a node home: config, node key, validator key and genesis.

    Without `genesis`, the new validator becomes the only authority of a fresh chain.
    Refuses to touch a directory that already holds a config.
    """
    if (path / CONFIG_FILE).exists():
        raise ConfigError(f"{path} is already initialized ({CONFIG_FILE} exists)")
    path.mkdir(parents=True, exist_ok=True)
    node_key = node_key or KeyPair.generate()
    validator_key = validator_key or KeyPair.generate()
    if genesis is None:
        genesis = single_validator_genesis(validator_key.address, chain_id, params or Params(), accounts)
    config = NodeConfig(moniker=moniker, http=http or HttpConfig(), p2p=p2p or P2pConfig())
    write_plain_key(path / NODE_KEY_FILE, node_key)
    write_plain_key(path / VALIDATOR_KEY_FILE, validator_key)
    write_genesis(path / GENESIS_FILE, genesis)
    _write_atomically(path / CONFIG_FILE, render_config(config))
    return Home(path, config, genesis, node_key, validator_key)


def is_node_home(path: Path) -> bool:
    """True when `path` holds a node home: a config, a genesis and a node key."""
    return all((path / name).is_file() for name in (CONFIG_FILE, GENESIS_FILE, NODE_KEY_FILE))


def rewrite_config(path: Path, config: NodeConfig) -> None:
    """Replace the `config.toml` of an existing home (`init --force`): keys, genesis and data are never touched."""
    if not is_node_home(path):
        raise ConfigError(f"{path} is not a node home: nothing to rewrite")
    _write_atomically(path / CONFIG_FILE, render_config(config))


def load_home(
    path: Path,
    http_port: int | None = None,
    http_host: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[Override] = (),
) -> Home:
    """Load a node home: `config.toml`, then `environ`'s `MARKETCHAIN_*` options, then command-line overrides.

    `http_port` and `http_host` are shorthands for the `--http-port`/`--http-host` overrides.
    """
    if not path.is_dir():
        raise ConfigError(f"no node home at {path}: create one with `marketchain init --home {path}`")
    shorthands = [Override("http.port", http_port, "--http-port")] if http_port is not None else []
    shorthands += [Override("http.host", http_host, "--http-host")] if http_host is not None else []
    config = effective_config(path, environ, [*overrides, *shorthands])
    genesis = read_genesis(path / GENESIS_FILE)
    try:
        node_key = load_key_file(path / NODE_KEY_FILE, None)
        validator_path = path / VALIDATOR_KEY_FILE
        validator_key = (
            load_key_file(validator_path, os.environ.get("MARKETCHAIN_VALIDATOR_PASSPHRASE"))
            if validator_path.exists()
            else None
        )
    except KeystoreError as error:
        raise ConfigError(error.message) from None
    return Home(path, config, genesis, node_key, validator_key)
