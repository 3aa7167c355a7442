"""Who a client of the HTTP API is, for its limits: its address, or its IPv6 /64."""

from __future__ import annotations

import ipaddress

IPV6_PREFIX_BITS = 64
"""IPv6 clients share one bucket per prefix of this many bits."""


def client_key(remote: str | None) -> str:
    """The bucket a client address counts against: the IPv4 address, or the IPv6 /64."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_PREFIX_BITS), strict=False)
        return str(network)
    return str(address)
