"""merchant.toml: what the merchant agent does (issue 16, docs/merchant-agent.md).

    [node]
    url = "http://127.0.0.1:26657"
    [agent]
    state_dir = "merchant-state"      # relative to the config file's directory
    shops = []                        # shop ids (hex); empty = every shop the key owns
    warn_before_ms = 86400000
    [accept]
    auto = true
    max_amount = 0                    # µMKT; 0 = no limit
    listings = []                     # empty = all
    [[digital]]
    listing = "<listing id hex>"
    [webhook]                         # optional, read by client.merchant.webhooks
    url = "http://127.0.0.1:8080/hooks"
    secret = "whsec_..."

Every key is checked: an unknown key, a wrong type or a bad id is a `ConfigError` naming it
(the CLI exits 2), like the node's config.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_NODE_URL = "http://127.0.0.1:26657"
"""`[node] url` when not given."""

DEFAULT_STATE_DIR = "merchant-state"
"""`[agent] state_dir` when not given."""

DEFAULT_WARN_BEFORE_MS = 86_400_000
"""`[agent] warn_before_ms` when not given: a day."""

MAX_CONFIG_BYTES = 1024 * 1024
"""A larger config file is refused before it is parsed."""

MAX_LIST_ENTRIES = 10_000
"""Most ids in one list of the config (`shops`, `listings`, `[[digital]]`)."""

_SECTIONS = {"node": {"url"}, "agent": {"state_dir", "shops", "warn_before_ms"},
             "accept": {"auto", "max_amount", "listings"}}
_ID = re.compile(r"[0-9a-f]{64}")


class ConfigError(Exception):
    """merchant.toml is missing, unreadable or holds a bad key or value (named in the message)."""


@dataclass(frozen=True)
class AcceptRules:
    """`[accept]`: which placed parcel orders the agent accepts on its own."""

    auto: bool = True
    """Accept placed parcel orders at all."""
    max_amount: int = 0
    """Accept only orders whose escrow is at most this, µMKT (0: no limit)."""
    listings: frozenset[bytes] = frozenset()
    """Accept only orders of these listings (empty: all)."""


@dataclass(frozen=True)
class MerchantConfig:
    """A parsed merchant.toml."""

    path: Path
    """The config file."""
    node_url: str = DEFAULT_NODE_URL
    """The node's HTTP base URL."""
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    """Cursor, inventory, outbox and dead letters (absolute)."""
    shops: frozenset[bytes] = frozenset()
    """The shops the agent runs (empty: every shop of the key)."""
    warn_before_ms: int = DEFAULT_WARN_BEFORE_MS
    """Warn when an accepted parcel order's ship deadline is this close, ms."""
    accept: AcceptRules = field(default_factory=AcceptRules)
    """`[accept]`."""
    digital_listings: frozenset[bytes] = frozenset()
    """Listings (`[[digital]]`) whose orders the agent delivers from its codes."""
    webhook: Any = None
    """`client.merchant.webhooks.WebhookSettings` of `[webhook]`, or None."""

    @property
    def inventory_dir(self) -> Path:
        """Where the encrypted codes and their journal live."""
        return self.state_dir / "inventory"

    @property
    def outbox_dir(self) -> Path:
        """Where the webhook outbox and `dead-letters.jsonl` live."""
        return self.state_dir / "webhooks"


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> MerchantConfig:
    """Read and check merchant.toml at `path`; `environ` (default `os.environ`) serves `secret_env`."""
    config_path = Path(path)
    try:
        with open(config_path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read merchant config {config_path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"merchant config {config_path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"merchant config {config_path} is not valid TOML: {error}") from None
    return parse_config(document, config_path, os.environ if environ is None else environ)


def parse_config(document: dict[str, Any], path: Path, environ: Mapping[str, str]) -> MerchantConfig:
    """A `MerchantConfig` from a parsed TOML document; `path` anchors relative paths."""
    unknown = sorted(set(document) - set(_SECTIONS) - {"digital", "webhook"})
    if unknown:
        raise ConfigError(f"{path}: unknown section or key {unknown[0]!r} (known: accept, agent, digital, node, webhook)")
    tables = {name: _table(document, name, path) for name in _SECTIONS}
    for name, known in _SECTIONS.items():
        extra = sorted(set(tables[name]) - known)
        if extra:
            raise ConfigError(f"{path}: unknown key [{name}] {extra[0]!r} (known: {', '.join(sorted(known))})")
    node, agent, accept = tables["node"], tables["agent"], tables["accept"]
    url = _typed(node, "url", str, DEFAULT_NODE_URL, "node", path)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{path}: [node] url {url!r} is not an http(s) URL")
    state_dir = Path(_typed(agent, "state_dir", str, DEFAULT_STATE_DIR, "agent", path)).expanduser()
    return MerchantConfig(
        path=path,
        node_url=url.rstrip("/"),
        state_dir=state_dir if state_dir.is_absolute() else (path.parent / state_dir).resolve(),
        shops=_ids(agent, "shops", "agent", path),
        warn_before_ms=_count(agent, "warn_before_ms", DEFAULT_WARN_BEFORE_MS, "agent", path),
        accept=AcceptRules(auto=_typed(accept, "auto", bool, True, "accept", path),
                           max_amount=_count(accept, "max_amount", 0, "accept", path),
                           listings=_ids(accept, "listings", "accept", path)),
        digital_listings=_digital(document.get("digital", []), path),
        webhook=_webhook(document.get("webhook"), path, environ),
    )


def _table(document: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def _typed(table: dict[str, Any], key: str, kind: type, default: Any, section: str, path: Path) -> Any:
    value = table.get(key, default)
    if type(value) is not kind:
        raise ConfigError(f"{path}: [{section}] {key} must be a {kind.__name__}, not {value!r}")
    return value


def _count(table: dict[str, Any], key: str, default: int, section: str, path: Path) -> int:
    value = _typed(table, key, int, default, section, path)
    if not 0 <= value < 2**63:
        raise ConfigError(f"{path}: [{section}] {key} must be an integer ≥ 0, not {value}")
    return value


def _id(value: Any, where: str, path: Path) -> bytes:
    if not isinstance(value, str) or not _ID.fullmatch(value.lower()):
        raise ConfigError(f"{path}: {where} must be an id of 64 hex characters, not {value!r}")
    return bytes.fromhex(value)


def _ids(table: dict[str, Any], key: str, section: str, path: Path) -> frozenset[bytes]:
    values = table.get(key, [])
    if not isinstance(values, list) or len(values) > MAX_LIST_ENTRIES:
        raise ConfigError(f"{path}: [{section}] {key} must be a list of at most {MAX_LIST_ENTRIES} ids")
    return frozenset(_id(value, f"[{section}] {key}", path) for value in values)


def _digital(tables: Any, path: Path) -> frozenset[bytes]:
    if not isinstance(tables, list) or len(tables) > MAX_LIST_ENTRIES:
        raise ConfigError(f"{path}: [[digital]] must be an array of tables (at most {MAX_LIST_ENTRIES})")
    listings = set()
    for table in tables:
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [[digital]] must be an array of tables")
        extra = sorted(set(table) - {"listing"})
        if extra:
            raise ConfigError(f"{path}: unknown key [[digital]] {extra[0]!r} (known: listing)")
        if "listing" not in table:
            raise ConfigError(f"{path}: [[digital]] needs listing = \"<listing id hex>\"")
        listings.add(_id(table["listing"], "[[digital]] listing", path))
    return frozenset(listings)


def _webhook(table: Any, path: Path, environ: Mapping[str, str]) -> Any:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [webhook] must be a table")
    from client.merchant.webhooks import WebhookSettings  # H5's part: imported only when configured

    try:
        return WebhookSettings.from_table(table, environ)
    except ValueError as error:
        raise ConfigError(f"{path}: [webhook] {error}") from None
