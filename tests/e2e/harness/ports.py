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


def free_base_port(count: int = 2) -> int:
    """A port P, below the ephemeral range, such that P … P+count-1 are all free now."""
    for _ in range(500):
        base = random.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - count, 2)
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no free range of ports below the ephemeral range")
