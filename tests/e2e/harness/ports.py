"""Free loopback ports for test nodes, below the kernel's ephemeral range.

Every port handed out is remembered for the life of the test process and never handed
out again, and each pytest-xdist worker draws from its own slice of `LISTEN_PORTS`: a
port that was free when it was probed may stay unbound for a while (a node is set up,
then started later), and neither another node of this process nor a node of another
worker may be given it meanwhile (an HTTP client once reached another node's P2P port).
"""

from __future__ import annotations

import os
import random
import socket

LISTEN_PORTS = range(20000, 32700)
"""Ports for test nodes: below the kernel's ephemeral range (32768–60999), so that a
restarted node never finds its port taken by some outbound connection meanwhile."""

_handed_out: set[int] = set()
"""Every port this process handed out."""


def worker_ports() -> range:
    """This process's slice of `LISTEN_PORTS`: the whole range outside pytest-xdist, else
    the slice of worker `gwN` among `PYTEST_XDIST_WORKER_COUNT` equal slices."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return LISTEN_PORTS
    index = int(worker[2:]) % count
    size = len(LISTEN_PORTS) // count
    start = LISTEN_PORTS.start + index * size
    return range(start, start + size)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 of this worker's slice, free a moment ago and never handed
    out before by this process."""
    ports = worker_ports()
    for _ in range(2000):
        port = random.choice(ports)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {ports.start}–{ports.stop - 1}")


def _all_free(base: int, count: int) -> bool:
    probes = []
    try:
        for port in range(base, base + count):
            if port in _handed_out:
                return False
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
    """A port P such that P … P+count-1 are all free now (and are then handed out).

    By default P is drawn at random from this worker's slice of `LISTEN_PORTS`; with
    `first`, the ranges P = first, first+count, … are tried in order instead (below 60000).
    """
    if first is not None:
        candidates = iter(range(first, 60000, count))
    else:
        ports = worker_ports()
        candidates = (random.randrange(ports.start, ports.stop - count, 2) for _ in range(2000))
    for base in candidates:
        if _all_free(base, count):
            _handed_out.update(range(base, base + count))
            return base
    raise RuntimeError(f"no free range of {count} loopback ports")
