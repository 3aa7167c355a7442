"""Transaction receipts (PROTOCOL R11)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Receipt:
    """The outcome of one included transaction."""

    ok: bool
    """True iff the transaction's rule succeeded."""
    code: str | None = None
    """The R12 error code when `ok` is false."""
    message: str = ""
    """Which field or rule failed; not committed, shown by the API."""
    events: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """What the rule did (transfers, role changes …); not committed, shown by the API."""

    def committed_form(self) -> dict[str, Any]:
        """Exactly `{ok: true}` or `{code, ok: false}`: the leaf of `results_root` (R11, R23)."""
        if self.ok:
            return {"ok": True}
        return {"code": self.code, "ok": False}

    def to_map(self) -> dict[str, Any]:
        """The full receipt as stored by a node and shown over HTTP."""
        result: dict[str, Any] = {"ok": self.ok, "events": list(self.events), "message": self.message}
        if self.code is not None:
            result["code"] = self.code
        return result

    @classmethod
    def from_map(cls, value: dict[str, Any]) -> Receipt:
        """Inverse of `to_map`."""
        return cls(
            ok=value["ok"],
            code=value.get("code"),
            message=value.get("message", ""),
            events=tuple(value.get("events", ())),
        )
