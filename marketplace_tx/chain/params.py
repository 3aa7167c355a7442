"""Chain parameters fixed in genesis (PROTOCOL §9, R33)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from marketplace_tx.primitives.errors import InvalidGenesis

BLOCK_ENVELOPE_ALLOWANCE = 16384
"""Room a block needs beside one largest transaction: header, last commit of 100+
validators, framing. Genesis requires max_block_bytes ≥ max_tx_bytes + this, so a
transaction of max_tx_bytes always fits a block."""


@dataclass(frozen=True)
class Params:
    """Every consensus parameter of the chain; genesis carries all of them (R33)."""

    min_fee: int = 10
    """Smallest fee in µMKT admission accepts (R10)."""
    max_tx_bytes: int = 16384
    """Largest canonical size of one signed transaction, in bytes (R10)."""
    max_block_txs: int = 10000
    """Most transactions one block may hold."""
    max_block_bytes: int = 4194304
    """Largest canonical size of one block, in bytes."""
    accept_window_ms: int = 172800000
    """How long a merchant has to accept a placed order (R15)."""
    ship_window_ms: int = 432000000
    """How long a merchant has to ship an accepted order (R15)."""
    escrow_timeout_ms: int = 2592000000
    """After shipping, when escrow is released to the merchant if nobody acts (R15)."""
    confirm_window_ms: int = 604800000
    """After delivery, when the order completes if the buyer does not confirm (R15)."""
    response_window_ms: int = 259200000
    """After a return request, when the buyer is refunded if unsettled (R15)."""
    arbitration_window_ms: int = 1209600000
    """After a dispute opens, when the buyer is refunded if the arbiter is silent (R15)."""
    review_window_ms: int = 2592000000
    """How long after an order ends its buyer may review it (R19)."""
    arbiter_fee_bps: int = 200
    """The arbiter's share of the escrow on `dispute_resolve`, in basis points."""
    max_clock_drift_ms: int = 2000
    """How far ahead of a validator's clock a new proposal's time may be (R28)."""
    open_merchants: bool = False
    """If true, anyone may open a shop without the `merchant` role."""

    def to_map(self) -> dict[str, Any]:
        """The canonical map of every parameter."""
        return asdict(self)

    @classmethod
    def from_map(cls, values: dict[str, Any]) -> Params:
        """Parse a genesis `params` map: every parameter present, nothing else (R33)."""
        if not isinstance(values, dict):
            raise InvalidGenesis("params must be a map")
        names = {item.name for item in fields(cls)}
        missing = sorted(names - set(values))
        unknown = sorted(set(values) - names)
        if missing:
            raise InvalidGenesis(f"params: missing {', '.join(missing)}")
        if unknown:
            raise InvalidGenesis(f"params: unknown {', '.join(unknown)}")
        for name, value in values.items():
            if name == "open_merchants":
                if not isinstance(value, bool):
                    raise InvalidGenesis("params.open_merchants must be a boolean")
            elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
                raise InvalidGenesis(f"params.{name} must be an unsigned integer")
        if values["arbiter_fee_bps"] > 10000:
            raise InvalidGenesis("params.arbiter_fee_bps must be at most 10000")
        if values["max_tx_bytes"] < 256 or values["max_block_txs"] < 1:
            raise InvalidGenesis("params: max_tx_bytes ≥ 256 and max_block_txs ≥ 1 are required")
        if values["max_block_bytes"] < values["max_tx_bytes"] + BLOCK_ENVELOPE_ALLOWANCE:
            raise InvalidGenesis(
                f"params.max_block_bytes must exceed max_tx_bytes by {BLOCK_ENVELOPE_ALLOWANCE}"
            )
        return cls(**values)

    def with_overrides(self, overrides: dict[str, str]) -> Params:
        """A copy with `NAME=VALUE` strings applied (CLI `--param`); unknown names raise ValueError."""
        values = self.to_map()
        for name, text in overrides.items():
            if name not in values:
                raise ValueError(f"unknown parameter {name!r}")
            if isinstance(values[name], bool):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"parameter {name} takes true or false")
                values[name] = text.lower() in ("true", "1", "yes")
            else:
                try:
                    values[name] = int(text.replace("_", ""))
                except ValueError:
                    raise ValueError(f"parameter {name} takes an integer, not {text!r}") from None
        try:
            return Params.from_map(values)
        except InvalidGenesis as error:
            raise ValueError(error.message) from None


class MalformedAssignment(ValueError):
    """A `NAME=VALUE` parameter assignment written without its `=`."""


def params_from_assignments(assignments: Iterable[str]) -> Params:
    """Default parameters with `NAME=VALUE` assignments applied (the CLI's `--param`, §9).

    Raises `MalformedAssignment` for an item without `=` (before any value is read) and
    ValueError, from `Params.with_overrides`, for an unknown name or a value out of rule (R33).
    """
    overrides = {}
    for item in assignments:
        name, separator, value = item.partition("=")
        if not separator:
            raise MalformedAssignment(f"--param {item!r}: write NAME=VALUE, e.g. --param min_fee=1")
        overrides[name.strip()] = value.strip()
    return Params().with_overrides(overrides)
