"""Nodes in their own Linux network namespaces on one bridge, so that links can be cut.

Namespaces need root and iproute2: `netns_unavailable_reason()` says why they cannot
be used here (None when they can), and a testnet that asks for them raises
`NetworkUnavailable` with that reason, so that a test can skip. Every network created
is destroyed at interpreter exit if its testnet did not do it first.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import sys

_NETWORKS: set[NamespaceNetwork] = set()
"""Namespace networks not yet destroyed: removed at interpreter exit."""


class NetworkUnavailable(RuntimeError):
    """Network namespaces cannot be used on this machine (the message says why)."""


_NETNS_PROBE: list[str | None] = []
"""The cached answer of `netns_unavailable_reason`."""


def _ip(*arguments: str) -> str:
    """Run `ip ARGUMENTS…`; its stdout. Raises RuntimeError with ip's message on failure."""
    completed = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=20,
                               stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {completed.stderr.strip() or completed.returncode}")
    return completed.stdout


def netns_unavailable_reason() -> str | None:
    """None when nodes can run in network namespaces with links cut between them; else why not."""
    if not _NETNS_PROBE:
        _NETNS_PROBE.append(_probe_netns())
    return _NETNS_PROBE[0]


def _probe_netns() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root, or the partition scenarios skip)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"mcprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
        _ip("-n", name, "link", "add", "br0", "type", "bridge")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "route", "add", "blackhole", "10.255.255.1/32")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return f"`ip netns` does not work here: {error}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in (but the default)."""
    used = []
    lines = _ip("-4", "-o", "addr", "show").splitlines() + _ip("-4", "route", "show", "table", "all").splitlines()
    for line in lines:
        for token in line.split()[:4]:
            try:
                network = ipaddress.ip_network(token, strict=False)
            except ValueError:
                continue
            if isinstance(network, ipaddress.IPv4Network):
                used.append(network)
    return used


class NamespaceNetwork:
    """Nodes in their own network namespaces on one bridge; links cut by blackhole routes.

    A hub namespace holds the bridge; every node namespace has `eth0` with address
    `subnet + index + 1` on it, and the root namespace one veth with `subnet + 254`, so
    that the harness reaches every node's API. A cut between nodes a and b is a
    blackhole route in each namespace to the other's address: packets vanish both ways,
    like a broken link (no refused connection). The subnet is a 10.x.y.0/24 that the
    root namespace does not use; nothing but what this class creates is touched, and
    `destroy` removes all of it.
    """

    def __init__(self) -> None:
        self.prefix = f"mc{secrets.token_hex(3)}"
        """Prefix of every namespace and interface name created."""
        self.subnet = self._free_subnet()
        """The /24 the nodes live in."""
        self.hub = f"{self.prefix}-hub"
        """The namespace of the bridge."""
        self.uplink = f"{self.prefix}r"
        """The root namespace's veth onto the bridge."""
        self.namespaces: dict[int, str] = {}
        """Node index → its namespace."""
        self.cuts: set[tuple[int, int]] = set()
        """Pairs of node indexes (smaller first) whose link is cut."""

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = _used_networks()
        for _ in range(500):
            candidate = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
            if not any(candidate.overlaps(network) for network in used if network.prefixlen > 0):
                return candidate
        raise NetworkUnavailable("no free 10.x.y.0/24 subnet for the test network")

    def address(self, index: int) -> str:
        """The address of node `index`."""
        if not 0 <= index < 250:
            raise ValueError("at most 250 nodes per namespace network")
        return str(self.subnet.network_address + index + 1)

    def create(self) -> None:
        """The hub namespace with its bridge, and the root namespace's veth onto it."""
        _NETWORKS.add(self)
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        _ip("link", "add", self.uplink, "type", "veth", "peer", "name", "uplink", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "uplink", "master", "br0", "up")
        _ip("addr", "add", f"{self.subnet.network_address + 254}/24", "dev", self.uplink)
        _ip("link", "set", self.uplink, "up")

    def add_node(self, index: int) -> tuple[str, str]:
        """A namespace for node `index`, plugged into the bridge: (namespace, address)."""
        namespace, address = f"{self.prefix}-n{index}", self.address(index)
        _ip("netns", "add", namespace)
        self.namespaces[index] = namespace
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self.hub, "link", "set", f"p{index}", "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        return namespace, address

    def cut(self, first: int, second: int) -> None:
        """Drop every packet between two nodes, both ways."""
        pair = (min(first, second), max(first, second))
        if pair in self.cuts or first == second:
            return
        for here, there in ((first, second), (second, first)):
            _ip("-n", self.namespaces[here], "route", "add", "blackhole", f"{self.address(there)}/32")
        self.cuts.add(pair)

    def mend(self, first: int, second: int) -> None:
        """Undo `cut(first, second)`."""
        pair = (min(first, second), max(first, second))
        if pair not in self.cuts:
            return
        for here, there in ((first, second), (second, first)):
            _ip("-n", self.namespaces[here], "route", "del", "blackhole", f"{self.address(there)}/32")
        self.cuts.discard(pair)

    def destroy(self) -> list[str]:
        """Delete every namespace (their interfaces go with them) and the uplink; what failed."""
        problems = []
        for namespace in [*self.namespaces.values(), self.hub]:
            completed = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True,
                                       timeout=20, stdin=subprocess.DEVNULL)
            if completed.returncode != 0 and "No such file" not in completed.stderr:
                problems.append(f"ip netns del {namespace}: {completed.stderr.strip()}")
        self.namespaces.clear()
        self.cuts.clear()
        subprocess.run(["ip", "link", "del", self.uplink], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
        _NETWORKS.discard(self)
        return problems


def _destroy_leftovers() -> None:
    for network in list(_NETWORKS):
        network.destroy()


atexit.register(_destroy_leftovers)
