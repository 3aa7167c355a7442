"""The account roles of PROTOCOL §4: granted by registrars (`role_grant`) or in genesis (R33)."""

from __future__ import annotations

ROLES = ("registrar", "merchant", "carrier", "arbiter", "producer", "inspector")
"""Every role a registrar can grant (§4)."""
