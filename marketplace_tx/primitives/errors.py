"""Error values with stable codes (PROTOCOL R12).

Every failure the protocol defines is an exception carrying a short snake_case
`code` that never changes between versions, and a `message` that names the field or
rule at fault. Admission errors reject a transaction before it reaches a block; rule
errors are recorded in a committed receipt.
"""

from __future__ import annotations

ADMISSION_CODES = (
    "malformed",
    "tx_too_large",
    "wrong_chain",
    "unknown_type",
    "bad_signature",
    "bad_nonce",
    "fee_too_low",
    "duplicate",
    "mempool_full",
)
"""Codes with which admission (R10) rejects a transaction."""

RULE_CODES = (
    "invalid_field",
    "not_found",
    "forbidden",
    "invalid_state",
    "deadline_passed",
    "price_changed",
    "out_of_stock",
    "insufficient_funds",
    "already_exists",
    "already_reviewed",
)
"""Codes with which a rule of the state machine fails (R11, R12), in R12 precedence order."""


class MarketchainError(Exception):
    """Base of every protocol error: a stable `code` and a human `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """Stable snake_case error code (R12)."""
        self.message = message
        """What went wrong, naming the field or rule."""


class CodecError(MarketchainError):
    """Bytes that are not canonical msgpack (R1, R2); always code `malformed`."""


class AdmissionError(MarketchainError):
    """A transaction refused by admission (R10) with one of `ADMISSION_CODES` or a rule code."""


class RuleError(MarketchainError):
    """A state machine rule failed (R11); the receipt records `code` and `message`."""


class InvalidBlock(MarketchainError):
    """A block that breaks a validity rule (R11, R23, R24); it must never be applied."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_block", message)


class InvalidGenesis(MarketchainError):
    """A genesis document that breaks R33."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_genesis", message)
