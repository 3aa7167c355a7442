"""Node configuration: `HOME/config.toml`, with every option's default (configs/default.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.json"
NODE_KEY_FILE = "node_key.json"
VALIDATOR_KEY_FILE = "validator_key.json"
DATA_DIRECTORY = "data"


class ConfigError(Exception):
    """A configuration file or value that cannot be used."""


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP API listener."""

    host: str = "127.0.0.1"
    """Address the API listens on; loopback by default."""
    port: int = 26657
    """TCP port of the API."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted; larger bodies get 413 `body_too_large`."""
    max_batch_txs: int = 10_000
    """Most transactions one `POST /txs/batch` may carry."""


@dataclass(frozen=True)
class P2pConfig:
    """The peer-to-peer listener (used once several authorities run)."""

    host: str = "127.0.0.1"
    """Address the P2P listener binds."""
    port: int = 26656
    """TCP port of the P2P listener."""
    persistent_peers: tuple[str, ...] = ()
    """Peers to keep connected to: `NODEADDRESS@host:port` or `host:port`."""


@dataclass(frozen=True)
class MempoolConfig:
    """Mempool capacity."""

    max_transactions: int = 50_000
    """Most pending transactions."""
    max_bytes: int = 128 * 1024 * 1024
    """Most pending bytes."""


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = "info"
    """`debug`, `info`, `warning` or `error`."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node reads from `config.toml`."""

    moniker: str = "node"
    """A human name for the node, shown in `/status` and logs."""
    http: HttpConfig = field(default_factory=HttpConfig)
    """The HTTP API."""
    p2p: P2pConfig = field(default_factory=P2pConfig)
    """Peer-to-peer networking."""
    mempool: MempoolConfig = field(default_factory=MempoolConfig)
    """The mempool."""
    log: LogConfig = field(default_factory=LogConfig)
    """Logging."""


_SECTIONS = {"http": HttpConfig, "p2p": P2pConfig, "mempool": MempoolConfig, "log": LogConfig}


def _section(cls: type, values: Any, name: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {item.name: item for item in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"[{name}] has an unknown option {key!r}")
    parsed = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
            raise ConfigError(f"{name}.{key} must be a {type(default).__name__}")
        parsed[key] = value
    return cls(**parsed)


def load_config(home: Path) -> NodeConfig:
    """Read `HOME/config.toml`; missing options take their defaults."""
    path = home / CONFIG_FILE
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run `marketchain init --home {home}` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    moniker = values.pop("moniker", "node")
    if not isinstance(moniker, str):
        raise ConfigError("moniker must be a string")
    sections = {}
    for name, value in values.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{name}]")
        sections[name] = _section(_SECTIONS[name], value, name)
    config = NodeConfig(moniker=moniker, **sections)
    for port in (config.http.port, config.p2p.port):
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range")
    return config


def render_config(config: NodeConfig) -> str:
    """The TOML text of a configuration, with every option."""
    lines = [f"moniker = {_toml_value(config.moniker)}", ""]
    for name in _SECTIONS:
        section = getattr(config, name)
        lines.append(f"[{name}]")
        for item in fields(section):
            lines.append(f"{item.name} = {_toml_value(getattr(section, item.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(type(value))
