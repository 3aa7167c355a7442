"""The numeric limits of the canonical encoding (PROTOCOL R1, R2).

Shared by the plain codec (`primitives.codec`) and its fast twin (`marketplace_tx.speedups`).
"""

from __future__ import annotations

UINT64_MAX = 2**64 - 1
"""The largest integer the encoding accepts (R1)."""
INT64_MIN = -(2**63)
"""The smallest integer the encoding accepts (R1)."""
INT64_MAX = 2**63 - 1
"""The largest signed 64-bit integer (the bound of `int` payload fields)."""
MAX_NESTING_DEPTH = 32
"""Deepest nesting of maps and arrays any protocol structure needs, with margin."""
