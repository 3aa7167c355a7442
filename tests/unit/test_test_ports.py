"""The test harness's port allocation (tests/e2e/harness/ports.py): ports handed out are
never handed out twice, and xdist workers draw from disjoint slices."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ports


def test_ports_are_never_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setattr(ports, "LISTEN_PORTS", range(20000, 20400))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    singles = [ports.free_port() for _ in range(30)]
    base = ports.free_base_port(4)
    taken = singles + list(range(base, base + 4))
    assert len(set(taken)) == len(taken)
    assert all(20000 <= port < 20400 for port in taken)


def test_workers_draw_from_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(set(ports.worker_ports()))
    assert not (slices[0] & slices[1]) and not (slices[1] & slices[2]) and not (slices[0] & slices[2])
    assert all(len(part) >= 4000 for part in slices)
    assert set().union(*slices) <= set(ports.LISTEN_PORTS)
