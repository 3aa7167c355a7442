"""Free loopback ports for test nodes, below the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket

LISTEN_PORTS = range(20000, 32700)
"""Ports for test nodes: below the kernel's ephemeral range (32768–60999), so that a
restarted node never finds its port taken by some outbound connection meanwhile."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 outside the ephemeral range that was free a moment ago."""
    for _ in range(500):
        port = random.choice(LISTEN_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _all_free(base: int, count: int) -> bool:
    probes = []
    try:
        for port in range(base, base + count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for probe in probes:
            probe.close()


def free_base_port(count: int = 2, first: int | None = None) -> int:
    """A port P such that P … P+count-1 are all free now.

    By default P is drawn at random below the ephemeral range (`LISTEN_PORTS`); with
    `first`, the ranges P = first, first+count, … are tried in order instead (below 60000).
    """
    if first is not None:
        for base in range(first, 60000, count):
            if _all_free(base, count):
                return base
        raise RuntimeError(f"no free range of {count} loopback ports from {first}")
    for _ in range(500):
        base = random.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - count, 2)
        if _all_free(base, count):
            return base
    raise RuntimeError("no free range of ports below the ephemeral range")
