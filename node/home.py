"""A node's home directory: config, keys, genesis and data (`marketchain init`).

Key files use the format of `client.keystore`, the one client module a node imports:
node and validator keys are the same key files a user's tools read and write, plain (the
default, as testnets and the test harness use) or encrypted with a passphrase
(`init --encrypt`, Argon2id "moderate", issue 13).

Permissions (issue 13), decided as OpenSSH's StrictModes and GnuPG do: a home, its data
directory and its key files are created 0700/0700/0600; on start, one that others may
only read is tightened with a warning, one that group or others may write (a home, a key,
`config.toml` or `genesis.json`) is refused, since whoever could write there could already
have replaced the keys.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from client.keystore import (
    DIRECTORY_MODE,
    FILE_MODE,
    KeystoreError,
    load_key_file,
    read_key_info,
    write_encrypted_key,
    write_plain_key,
)
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

PassphraseSource = Callable[[], str]
"""Gives the passphrase of a home's encrypted keys when one is first needed (a prompt, a
file, a variable); raises ConfigError when there is none."""


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
    passphrase: str | None = None,
) -> Home:
    """Create a node home (mode 0700, with its data directory): config, node key, validator
    key and genesis.

    Without `genesis`, the new validator becomes the only authority of a fresh chain.
    With `passphrase`, both keys are written encrypted (Argon2id moderate), else plain.
    Refuses to touch a directory that already holds a config.
    """
    if (path / CONFIG_FILE).exists():
        raise ConfigError(f"{path} is already initialized ({CONFIG_FILE} exists)")
    _make_private_directory(path)  # also an existing empty directory, whatever the umask
    _make_private_directory(path / DATA_DIRECTORY)
    node_key = node_key or KeyPair.generate()
    validator_key = validator_key or KeyPair.generate()
    if genesis is None:
        genesis = single_validator_genesis(validator_key.address, chain_id, params or Params(), accounts)
    config = NodeConfig(moniker=moniker, http=http or HttpConfig(), p2p=p2p or P2pConfig())
    for name, key in ((NODE_KEY_FILE, node_key), (VALIDATOR_KEY_FILE, validator_key)):
        try:
            if passphrase is None:
                write_plain_key(path / name, key)
            else:
                write_encrypted_key(path / name, key, passphrase)
        except KeystoreError as error:
            raise ConfigError(error.message) from None
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
    passphrase: PassphraseSource | None = None,
) -> Home:
    """Load a node home: `config.toml`, then `environ`'s `MARKETCHAIN_*` options, then command-line overrides.

    `http_port` and `http_host` are shorthands for the `--http-port`/`--http-host` overrides.
    Encrypted key files are opened with `passphrase()`, called at most once and only if one
    is encrypted; without it, an encrypted key is a ConfigError. A wrong passphrase is a
    ConfigError `wrong passphrase for key file PATH`.
    """
    if not path.is_dir():
        raise ConfigError(f"no node home at {path}: create one with `marketchain init --home {path}`")
    shorthands = [Override("http.port", http_port, "--http-port")] if http_port is not None else []
    shorthands += [Override("http.host", http_host, "--http-host")] if http_host is not None else []
    config = effective_config(path, environ, [*overrides, *shorthands])
    genesis = read_genesis(path / GENESIS_FILE)
    keys = _HomeKeys(passphrase)
    node_key = keys.load(path / NODE_KEY_FILE)
    validator_path = path / VALIDATOR_KEY_FILE
    validator_key = keys.load(validator_path) if validator_path.exists() else None
    return Home(path, config, genesis, node_key, validator_key)


class _HomeKeys:
    """Opens a home's key files, asking `passphrase` once, only if a file is encrypted."""

    def __init__(self, passphrase: PassphraseSource | None) -> None:
        """Keys of one home, opened with `passphrase` if needed."""
        self._source = passphrase
        self._passphrase: str | None = None

    def load(self, key_path: Path) -> KeyPair:
        """The key pair in `key_path`; KeystoreError becomes ConfigError (one-line CLI error)."""
        try:
            if read_key_info(key_path).encrypted and self._passphrase is None:
                if self._source is None:
                    raise ConfigError(f"key file {key_path} is encrypted: a passphrase is needed to load it")
                self._passphrase = self._source()
            return load_key_file(key_path, self._passphrase)
        except KeystoreError as error:
            raise ConfigError(error.message) from None


def _make_private_directory(path: Path) -> None:
    """Create `path` (and its parents) if missing and set it to DIRECTORY_MODE, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    os.chmod(path, DIRECTORY_MODE)


def check_home_permissions(path: Path) -> list[str]:
    """Check (and tighten) the modes of a node home before it is loaded; the warnings to log.

    Refuses (ConfigError) a home, key file, config or genesis that group or others may write;
    tightens a home or data directory that others may read to 0700 and a key file to 0600.
    The data directory is created (0700) if missing, before LevelDB would create it 0755.
    A directory that is not a node home is left alone (`load_home` says what is missing).
    """
    if not is_node_home(path):
        return []
    data = path / DATA_DIRECTORY
    if not data.exists():
        _make_private_directory(data)
    entries = [(path, DIRECTORY_MODE), (data, DIRECTORY_MODE), (path / NODE_KEY_FILE, FILE_MODE),
               (path / VALIDATOR_KEY_FILE, FILE_MODE), (path / CONFIG_FILE, None), (path / GENESIS_FILE, None)]
    warnings = []
    for entry, wanted in entries:
        try:
            mode = stat.S_IMODE(entry.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            fix = f"chmod {oct(wanted or 0o644)[2:]} {entry}"
            raise ConfigError(f"{entry} is writable by group or others (mode {oct(mode)[2:]}): whoever can write "
                              f"there can replace this node's keys or configuration; check it, then run `{fix}`")
        if wanted is not None and mode & ~wanted & 0o777:
            try:
                os.chmod(entry, wanted)
            except OSError as error:
                warnings.append(f"{entry} is readable by others (mode {oct(mode)[2:]}) and cannot be "
                                f"tightened: {error.strerror or error}")
                continue
            warnings.append(f"{entry} was readable by others (mode {oct(mode)[2:]}): tightened to "
                            f"{oct(wanted)[2:]}")
    return warnings
