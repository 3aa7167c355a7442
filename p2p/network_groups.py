"""Which network a host belongs to, and whether a peer-exchanged host may be dialed.

Two kinds of groups, as in Bitcoin Core's netgroup:
- the *subnet* of an inbound connection (/24 for IPv4, /48 for IPv6), over which the
  inbound limits are counted: one machine or one small network holds few slots;
- the *address group* (/16 for IPv4, /32 for IPv6) that the address book buckets by,
  both for the address itself and for the peer that told us about it.

A host that is not an IP address (a DNS name) is its own group.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""An IPv4 or IPv6 address."""

INBOUND_SUBNET_BITS = (24, 48)
"""Prefix lengths (IPv4, IPv6) of the subnet an inbound limit is counted over."""

ADDRESS_GROUP_BITS = (16, 32)
"""Prefix lengths (IPv4, IPv6) of the groups the address book buckets by."""


def parse_ip(host: str) -> IPAddress | None:
    """The IP address `host` names (IPv4-mapped IPv6 as IPv4), or None for a DNS name."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def group_of(host: str, bits: tuple[int, int]) -> str:
    """The network `host` is in, as text: `10.1.2.0/24`; a DNS name is its own group."""
    ip = parse_ip(host)
    if ip is None:
        return host.lower()
    prefix = bits[0] if ip.version == 4 else bits[1]
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def subnet_of(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an inbound connection from `host` counts against."""
    return group_of(host, INBOUND_SUBNET_BITS)


def address_group(host: str) -> str:
    """The /16 (IPv4) or /32 (IPv6) the address book buckets `host` by."""
    return group_of(host, ADDRESS_GROUP_BITS)


def never_dialable(host: str) -> str | None:
    """Why an exchanged `host` is never dialed, whatever the config (None if it may be)."""
    ip = parse_ip(host)
    if ip is None:
        return None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    return None


def non_public(host: str) -> str | None:
    """Why `host` is not a public address (None if it is one): a DNS name, loopback, private…"""
    ip = parse_ip(host)
    if ip is None:
        return "a DNS name"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None
