"""Node configuration: `HOME/config.toml`, with every option's default (configs/default.toml).

Where a value comes from, strongest first: a command-line flag, an environment
variable `MARKETCHAIN_<SECTION>_<OPTION>` (`MARKETCHAIN_MONIKER` for the top-level
moniker), `config.toml`, the default here. docs/configuration.md lists every option.
Keys are not configuration: they live in their own files and are never rendered.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
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
    rate_per_ip: int = 200
    """Request units per second one client address regains (IPv6: one /64): a plain request
    costs 1, transactions submitted, list rows and body bytes cost more (node/http/costs.py);
    beyond its burst, 429 `rate_limited` with `Retry-After`. 0 turns the per-address limit off."""
    burst_per_ip: int = 1000
    """Request units one client address may spend at once before `rate_per_ip` applies."""
    max_connections: int = 512
    """Most HTTP connections served at once (event streams included); one more is refused
    with 429 `rate_limited` and closed."""
    max_connections_per_ip: int = 64
    """Most open HTTP connections of one client address (IPv6: one /64), counted from the
    moment they are accepted; one more is answered 429 `rate_limited` and closed."""
    max_event_streams_per_ip: int = 8
    """Most `GET /events` streams one client address may hold open; one more is 429 `rate_limited`."""
    header_timeout_s: int = 20
    """Seconds a new connection has to send its first request's headers; after, 408
    `request_timeout` and the connection is closed (slow clients cannot hold it)."""
    body_timeout_s: int = 60
    """Seconds a request has to send its whole body; after, 408 `request_timeout` and closed."""
    write_timeout_s: int = 60
    """Seconds a client has to take an answer (not read: the connection is dropped)."""


@dataclass(frozen=True)
class P2pConfig:
    """The peer-to-peer listener (used once several authorities run)."""

    host: str = "127.0.0.1"
    """Address the P2P listener binds."""
    port: int = 26656
    """TCP port of the P2P listener."""
    persistent_peers: tuple[str, ...] = ()
    """Peers to keep connected to: `NODEADDRESS@host:port` or `host:port`."""
    unconditional_peers: tuple[str, ...] = ()
    """Node addresses (hex) that are never refused for lack of room, like the persistent
    peers' (p2p/inbound_policy.py)."""
    max_inbound_per_ip: int = 4
    """Most inbound connections from one IP (in the handshake or connected); identified
    persistent and unconditional peers do not count."""
    max_inbound_per_subnet: int = 8
    """Most inbound connections from one /24 (IPv4) or /48 (IPv6)."""
    allow_private_peers: bool = False
    """Dial loopback, private and link-local addresses and DNS names learned by peer exchange."""
    send_queue_bytes: int = 4 * 1024 * 1024
    """Bytes queued for one peer before new messages to it are dropped (p2p/buffers.py)."""
    total_send_bytes: int = 64 * 1024 * 1024
    """Bytes queued for all peers together before new messages are dropped."""
    receive_queue_bytes: int = 4 * 1024 * 1024
    """Bytes read from one peer and not yet handled before reading it pauses."""
    total_receive_bytes: int = 64 * 1024 * 1024
    """Bytes read from all peers and not yet handled before reading pauses."""


@dataclass(frozen=True)
class MempoolConfig:
    """Mempool capacity, and its journal (node/mempool_journal.py)."""

    max_transactions: int = 50_000
    """Most pending transactions."""
    max_bytes: int = 128 * 1024 * 1024
    """Most pending bytes."""
    max_pending_per_sender: int = 65
    """Most pending transactions of one sender (ready and future); the default is the
    whole nonce window of R10 (next … next + 64)."""
    max_future_per_sender: int = 16
    """Most future transactions of one sender (nonce above a gap: no block can include them yet)."""
    max_future: int = 5_000
    """Most future transactions in the pool; a future newcomer beyond must outbid one (issue 13)."""
    future_ttl_s: int = 60
    """Seconds a transaction may stay future before it is dropped (with its sender's later nonces)."""
    gossip_queue_bytes_per_peer: int = 8 * 1024 * 1024
    """Most bytes of one peer's gossiped `txs` messages waiting for admission (node/tx_gossip.py)."""
    gossip_queue_bytes: int = 32 * 1024 * 1024
    """Most bytes of all peers' gossiped `txs` messages waiting for admission."""
    journal: bool = True
    """Keep pending transactions in `HOME/data/mempool.journal` and admit them again at
    start, so that a restart (even `kill -9`) loses none."""
    journal_max_bytes: int = 64 * 1024 * 1024
    """Most bytes the journal file may hold; transactions beyond wait for the next rewrite."""
    journal_rewrite_interval_s: int = 60
    """Seconds between two rewrites of the journal with only the transactions still
    pending (also done at start and at a clean stop)."""


@dataclass(frozen=True)
class StorageConfig:
    """LevelDB tuning (node/storage.py; docs/performance.md measured the defaults)."""

    write_buffer_bytes: int = 32 * 1024 * 1024
    """Size of LevelDB's in-memory write buffer: larger buffers mean fewer, larger
    compactions (less CPU per transaction) for more memory (up to twice this)."""
    cache_bytes: int = 8 * 1024 * 1024
    """LevelDB's cache of uncompressed blocks for reads."""
    bloom_filter_bits: int = 10
    """Bits per key of LevelDB's Bloom filters, which spare disk reads for keys that do
    not exist (0: no filter)."""
    keep_state: int = 1000
    """State proofs are served for the last this many heights (R40, ≥ 1): older versions'
    undo records are deleted (node/state_history.py)."""
    keep_blocks: int = 0
    """Blocks kept (R40): 0 keeps every block (an archive node, the default for every node,
    validators included); N ≥ `keep_state` keeps the last N. Older blocks, their receipts,
    transaction index entries and account histories are deleted in the background
    (node/pruning.py); the headers and commits of change points (R37), of the oldest kept
    snapshot and of the head are kept forever. Reads of pruned data answer 410 `pruned`."""


@dataclass(frozen=True)
class StatesyncConfig:
    """State sync (R39): serving snapshots, and joining a chain from one (docs/operations.md)."""

    enable: bool = False
    """Join by state sync: a node whose database is still at genesis restores the newest
    snapshot its peers offer (its header verified by the light client, R37, from this
    home's genesis), then continues by block sync. Ignored once the node has blocks."""
    snapshot_interval: int = 0
    """Write a snapshot of the state after every height that is a multiple of this (0: none),
    in the background, and serve it to joining peers over P2P and HTTP."""
    snapshot_keep: int = 2
    """Snapshots kept on disk (the newest ones); older ones are deleted."""
    discovery_time_s: int = 5
    """Seconds a joining node collects snapshot offers from its peers before choosing one
    (it waits longer, up to `discovery_timeout_s`, while no snapshot is offered at all)."""
    discovery_timeout_s: int = 120
    """Seconds a joining node waits for any peer to offer a usable snapshot before it gives
    up and falls back to block sync from genesis (logged as an error)."""
    chunk_request_timeout_s: int = 10
    """Seconds a joining node waits for a requested chunk before asking another peer
    (the silent peer is charged, R32)."""
    chunk_fetchers: int = 8
    """Chunk requests a joining node keeps in flight at once, spread over the peers that
    serve the chosen manifest (each chunk is at most 1 MiB)."""


@dataclass(frozen=True)
class ConsensusConfig:
    """How this node builds its proposals (the protocol's rules are in genesis, not here)."""

    block_time_budget_ms: int = 500
    """Time the node aims to spend building one block: the number of transactions is
    capped by this budget divided by the measured time per transaction (and always by
    genesis `max_block_txs` and `max_block_bytes`), so that other validators can check
    a proposal well within timeoutPropose."""


@dataclass(frozen=True)
class SignaturesConfig:
    """Where transaction checks and signatures run (node/signature_workers.py)."""

    worker_processes: int = 1
    """Worker processes that decode, check and verify the signatures of incoming
    transaction batches and of blocks being synced, beside the node's own process
    (started when needed, stopped when idle); 0 does it all in the node's threads.
    More help on machines with more than two cores."""


@dataclass(frozen=True)
class LogConfig:
    """Logging (node/logging_setup.py)."""

    level: str = "info"
    """One level (`debug`, `info`, `warning`, `error`) or per-logger levels: `p2p:debug,*:warning`."""
    format: str = "plain"
    """`plain` text lines, or `json`: one JSON object per line."""


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
    storage: StorageConfig = field(default_factory=StorageConfig)
    """The database."""
    statesync: StatesyncConfig = field(default_factory=StatesyncConfig)
    """Snapshots and joining by state sync."""
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    """Building proposals."""
    signatures: SignaturesConfig = field(default_factory=SignaturesConfig)
    """Signature worker processes."""
    log: LogConfig = field(default_factory=LogConfig)
    """Logging."""


_SECTIONS = {
    "http": HttpConfig,
    "p2p": P2pConfig,
    "mempool": MempoolConfig,
    "storage": StorageConfig,
    "statesync": StatesyncConfig,
    "consensus": ConsensusConfig,
    "signatures": SignaturesConfig,
    "log": LogConfig,
}

ENVIRONMENT_PREFIX = "MARKETCHAIN_"
"""Every option can be set by `MARKETCHAIN_<SECTION>_<OPTION>` (`MARKETCHAIN_MONIKER` for the moniker)."""

_POSITIVE = {
    "p2p.max_inbound_per_ip",
    "p2p.max_inbound_per_subnet",
    "p2p.send_queue_bytes",
    "p2p.total_send_bytes",
    "p2p.receive_queue_bytes",
    "p2p.total_receive_bytes",
    "http.max_body_bytes",
    "http.max_batch_txs",
    "http.burst_per_ip",
    "http.max_connections",
    "http.max_connections_per_ip",
    "http.max_event_streams_per_ip",
    "http.header_timeout_s",
    "http.body_timeout_s",
    "http.write_timeout_s",
    "mempool.max_transactions",
    "mempool.max_bytes",
    "mempool.max_pending_per_sender",
    "mempool.max_future_per_sender",
    "mempool.max_future",
    "mempool.future_ttl_s",
    "mempool.gossip_queue_bytes_per_peer",
    "mempool.gossip_queue_bytes",
    "mempool.journal_max_bytes",
    "mempool.journal_rewrite_interval_s",
    "storage.write_buffer_bytes",
    "storage.cache_bytes",
    "storage.keep_state",
    "statesync.snapshot_keep",
    "statesync.discovery_time_s",
    "statesync.discovery_timeout_s",
    "statesync.chunk_request_timeout_s",
    "statesync.chunk_fetchers",
    "consensus.block_time_budget_ms",
}
_NON_NEGATIVE = {
    "http.rate_per_ip", "storage.bloom_filter_bits", "signatures.worker_processes",
    "storage.keep_blocks", "statesync.snapshot_interval",
}
_PORTS = {"http.port", "p2p.port"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Override:
    """One option set on the command line."""

    option: str
    """`SECTION.OPTION`, or `moniker`."""
    value: Any
    """The value: of the option's type, or text to parse like an environment variable."""
    source: str
    """What set it, for error messages: the flag, e.g. `--http-port`."""


def option_names() -> list[str]:
    """Every option as `SECTION.OPTION` (`moniker` for the top-level one), in file order."""
    return ["moniker"] + [f"{name}.{item.name}" for name, cls in _SECTIONS.items() for item in fields(cls)]


def environment_variable(option: str) -> str:
    """The variable that overrides an option: `http.port` → `MARKETCHAIN_HTTP_PORT`."""
    return ENVIRONMENT_PREFIX + option.replace(".", "_").upper()


def _default(option: str) -> Any:
    section, _, name = option.rpartition(".")
    return getattr(_SECTIONS[section](), name) if section else getattr(NodeConfig(), name)


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "boolean (true or false)"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, tuple):
        return "comma-separated list"
    return "string"


def _check(option: str, value: Any, where: str) -> Any:
    """A value of the option's type and range; ConfigError naming `where` otherwise."""
    default = _default(option)
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where} must be a list of strings")
        value = tuple(value)
    elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
        raise ConfigError(f"{where} must be a {type(default).__name__}")
    if option in _PORTS and not 0 <= value <= 65535:
        raise ConfigError(f"{where}: port {value} is out of range (0 … 65535)")
    if option in _POSITIVE and value < 1:
        raise ConfigError(f"{where} must be at least 1, not {value}")
    if option in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where} must be at least 0, not {value}")
    if option == "p2p.persistent_peers":
        from p2p.addresses import parse_peer_address
        from p2p.errors import P2PError

        for peer in value:
            try:
                parse_peer_address(peer)
            except P2PError as error:
                raise ConfigError(
                    f"{where}: {peer!r} is not a peer address ({error.message}); "
                    "write NODEADDRESS@host:port or host:port"
                ) from None
    if option == "p2p.unconditional_peers":
        for peer in value:
            if len(peer) != 64 or any(character not in "0123456789abcdef" for character in peer):
                raise ConfigError(f"{where}: {peer!r} is not a node address (64 lowercase hex characters)")
    if option == "log.level":
        from node.logging_setup import LevelSpecError, parse_level_spec

        try:
            parse_level_spec(value)
        except LevelSpecError as error:
            raise ConfigError(f"{where}: {error}") from None
    if option == "log.format" and value not in ("plain", "json"):
        raise ConfigError(f"{where} must be plain or json, not {value!r}")
    return value


def parse_text(option: str, text: str, where: str) -> Any:
    """The value of an option written as text (an environment variable, `--set`)."""
    default = _default(option)
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ConfigError(f"{where} must be true or false, not {text!r}")
        value: Any = lowered in _TRUE
    elif isinstance(default, int):
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{where} must be an integer, not {text!r}") from None
    elif isinstance(default, tuple):
        value = tuple(item.strip() for item in text.split(",") if item.strip())
    else:
        value = text
    return _check(option, value, where)


def _with(config: NodeConfig, option: str, value: Any) -> NodeConfig:
    section, _, name = option.rpartition(".")
    if not section:
        return replace(config, **{name: value})
    return replace(config, **{section: replace(getattr(config, section), **{name: value})})


def _section(cls: type, values: Any, name: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {item.name for item in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"[{name}] has an unknown option {key!r} (known: {', '.join(sorted(known))})")
    return cls(**{key: _check(f"{name}.{key}", value, f"{name}.{key}") for key, value in values.items()})


def load_config(home: Path) -> NodeConfig:
    """Read `HOME/config.toml`; missing options take their defaults (no environment, no flags)."""
    path = home / CONFIG_FILE
    if not home.is_dir():
        raise ConfigError(f"no node home at {home}: create one with `marketchain init --home {home}`")
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run `marketchain init --home {home}` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    moniker = values.pop("moniker", "node")
    if not isinstance(moniker, str):
        raise ConfigError("moniker must be a string")
    sections = {}
    for name, value in values.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{name}] (known: {', '.join(_SECTIONS)})")
        try:
            sections[name] = _section(_SECTIONS[name], value, name)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    return NodeConfig(moniker=moniker, **sections)


def apply_environment(config: NodeConfig, environ: Mapping[str, str]) -> NodeConfig:
    """`config` with every `MARKETCHAIN_<SECTION>_<OPTION>` variable of `environ` applied.

    A variable that names a known section but no option of it is an error (a typo
    would otherwise be ignored silently); other `MARKETCHAIN_*` variables (`_NODE`,
    `_KEY` …) belong to the CLI and are left alone.
    """
    by_variable = {environment_variable(option): option for option in option_names()}
    for variable in sorted(environ):
        option = by_variable.get(variable)
        if option is not None:
            config = _with(config, option, parse_text(option, environ[variable], variable))
            continue
        for section in _SECTIONS:
            prefix = f"{ENVIRONMENT_PREFIX}{section.upper()}_"
            if variable.startswith(prefix):
                known = [name for name in by_variable if name.startswith(prefix)]
                raise ConfigError(f"{variable} is not a configuration option ([{section}] takes {', '.join(known)})")
    return config


def apply_overrides(config: NodeConfig, overrides: Iterable[Override]) -> NodeConfig:
    """`config` with command-line values applied (text values are parsed like the environment's)."""
    known = option_names()
    for override in overrides:
        if override.option not in known:
            raise ConfigError(f"{override.source}: unknown option {override.option!r} (known: {', '.join(known)})")
        if isinstance(override.value, str) and not isinstance(_default(override.option), str):
            value = parse_text(override.option, override.value, override.source)
        else:
            value = _check(override.option, override.value, override.source)
        config = _with(config, override.option, value)
    return config


def parse_set_option(text: str) -> Override:
    """`--set SECTION.OPTION=VALUE` as an Override."""
    option, separator, value = text.partition("=")
    if not separator or not option.strip():
        raise ConfigError(f"--set {text!r}: write SECTION.OPTION=VALUE, e.g. --set http.port=9000")
    return Override(option.strip(), value, f"--set {option.strip()}")


def effective_config(home: Path, environ: Mapping[str, str] | None = None,
                     overrides: Iterable[Override] = ()) -> NodeConfig:
    """The configuration a node runs with: flag > environment > `config.toml` > default."""
    config = load_config(home)
    if environ is not None:
        config = apply_environment(config, environ)
    return check_config(apply_overrides(config, overrides))


def check_config(config: NodeConfig) -> NodeConfig:
    """`config` if its options agree with each other, else `ConfigError` saying which do not."""
    storage = config.storage
    if storage.keep_blocks and storage.keep_blocks < storage.keep_state:
        raise ConfigError(
            f"storage.keep_blocks = {storage.keep_blocks} is below storage.keep_state = {storage.keep_state}: "
            "keep_blocks is 0 (every block) or at least keep_state (R40)"
        )
    return config


def config_to_json(config: NodeConfig) -> dict[str, Any]:
    """The configuration as JSON-ready values (lists for tuples), sections as objects."""
    value: dict[str, Any] = {"moniker": config.moniker}
    for name in _SECTIONS:
        section = getattr(config, name)
        value[name] = {
            item.name: list(getattr(section, item.name)) if isinstance(getattr(section, item.name), tuple)
            else getattr(section, item.name)
            for item in fields(section)
        }
    return value


def render_config(config: NodeConfig) -> str:
    """The TOML text of a configuration, with every option."""
    values: dict[str, Any] = {"moniker": config.moniker}
    for name in _SECTIONS:
        section = getattr(config, name)
        values[name] = {item.name: getattr(section, item.name) for item in fields(section)}
    return render_toml(values)


def render_toml(values: Mapping[str, Any]) -> str:
    """The TOML text of a config mapping: top-level options, a blank line, then each
    `[section]` (a nested mapping) followed by a blank line.

    The one TOML writer of the project: `render_config` and the test harness (which
    edits a node's config.toml) both use it. Values may be booleans, integers, strings
    and lists or tuples of them.
    """
    lines = [f"{name} = {_toml_value(value)}" for name, value in values.items() if not isinstance(value, Mapping)]
    lines.append("")
    for name, section in values.items():
        if isinstance(section, Mapping):
            lines.append(f"[{name}]")
            lines.extend(f"{option} = {_toml_value(value)}" for option, value in section.items())
            lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML forbids raw DEL
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(type(value))
