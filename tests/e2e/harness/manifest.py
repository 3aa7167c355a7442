"""A testnet as data: validators, genesis parameters, test faults, network, perturbations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Manifest:
    """A testnet as data: what `Testnet` starts, and the perturbations it may apply.

        Manifest(validators=4, faults={1: "equivocate"}, full_nodes=1,
                 perturbations=(Perturbation("kill", 3), Perturbation("start", 3)))
    """

    validators: int = 4
    """Validator processes started by `marketchain testnet start`."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Genesis parameters (`--param NAME=VALUE`)."""
    faults: Mapping[int, str] = field(default_factory=dict)
    """Node index → `MARKETCHAIN_TEST_FAULT` value: that node is restarted with the fault on."""
    network: str = "loopback"
    """`loopback` (every node on 127.0.0.1, started by the CLI) or `netns` (each node in
    its own network namespace, so that links can be cut; needs root)."""
    full_nodes: int = 0
    """Non-validators added (peered with every validator) once the validators run."""
    perturbations: tuple[Perturbation, ...] = ()
    """What `Testnet.perturb()` applies when given no steps of its own."""


@dataclass(frozen=True)
class Perturbation:
    """One step of a scenario: `kill`, `stop`, `start`, `restart`, `pause`, `resume`,
    `disconnect` or `reconnect` node `index`."""

    action: str
    """`kill` (SIGKILL), `stop` (SIGTERM), `start`, `restart` (stop, then start),
    `pause` (SIGSTOP), `resume` (SIGCONT), `disconnect` / `reconnect` (netns only)."""
    index: int
    """The node it applies to."""
