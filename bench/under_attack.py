"""The "under attack" rows of `make bench`: honest throughput during each attack of issue 13.

Four validators on loopback (the test harness's `Testnet`, prepared by
`tests.e2e.adversary.battlefield.prepare_battlefield`), then, all in the same run:

- a warm-up load (not reported), then an unattacked phase: bench/load.py drives
  transfers at full load through the four APIs (its own process; transactions signed
  before its clock starts);
- one phase per attack: the same load, while this process runs the attack over and over
  (a fresh loopback /16 each time, so that a ban of one round does not spare the next)
  until the load is done;
- the unattacked phase again (the unattacked rate is the mean of both, so that a drift
  of the machine over the run does not favour either side).

Each phase reports the honest final tx/s and latency (bench/load.py's figures), the
ratio to the unattacked rate (issue 13's target: at least 0.7), and the largest RSS
growth of any node over the phase (target: under 64 MiB).

The attacks are the adversary harness's (tests/e2e/adversary/attacks.py and
attacks_connections.py): this module imports that toolkit from the test tree. Two run
lighter than in the tests: slot exhaustion holds the slots without restarting a
validator (a restart would measure the restart), and block_request amplification does
not first wait for the chain to hold 150 blocks.

    .venv/bin/python bench/under_attack.py [--txs 6000] [--senders 400]   # or: bench/run.py --only attack
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from tests.e2e.adversary.attacker import abort_all  # noqa: E402
from tests.e2e.adversary.attacks import (  # noqa: E402
    Attack,
    BlockRequestAmplification,
    FakeEvidence,
    FalseHeightClaim,
    FutureProposals,
    NeverReadyTransactions,
)
from tests.e2e.adversary.attacks_connections import (  # noqa: E402
    GarbageFrames,
    PexPoisoning,
    SlotExhaustion,
    Slowloris,
)
from tests.e2e.adversary.battlefield import Battlefield, prepare_battlefield  # noqa: E402
from tests.e2e.adversary.measure import MAX_RSS_GROWTH_MIB, RssSampler  # noqa: E402
from tests.e2e.testnet_harness import Manifest, Testnet  # noqa: E402

THROUGHPUT_TARGET = 0.7
"""Honest final tx/s under attack, as a fraction of the unattacked rate (issue 13)."""

FIRST_ROUND_NUMBER = 20
"""Loopback /16 of the first attack round (127.30.x.y); each round takes the next."""

ROUND_NUMBERS = 226
"""Loopback /16s the rounds cycle through (127.30 … 127.255); once round, a new pass
starts at fresh /24s of them, so that no round comes from an address a ban still covers."""

PASS_HOSTS = 42 * 250
"""Host numbers (42 /24s, more than any one round uses) between two passes."""

ATTACKS: tuple[type[Attack], ...] = (
    BlockRequestAmplification, FutureProposals, FakeEvidence, SlotExhaustion, NeverReadyTransactions,
    GarbageFrames, PexPoisoning, Slowloris, FalseHeightClaim,
)
"""Every attack of the adversary harness, in the order of the issue."""


class _Rounds:
    """Hands out fresh loopback addresses to each attack round: (/16 number, host offset)."""

    def __init__(self) -> None:
        self.taken = 0

    def take(self) -> tuple[int, int]:
        """The next round's (/16 number, host offset)."""
        passes, index = divmod(self.taken, ROUND_NUMBERS)
        self.taken += 1
        return FIRST_ROUND_NUMBER + index, passes * PASS_HOSTS


def make_attack(kind: type[Attack], field: Battlefield, addresses: tuple[int, int]) -> Attack:
    """One round of `kind` from fresh addresses, lightened for the bench where needed."""
    attack = kind(field)
    attack.number, attack.host_offset = addresses
    if isinstance(attack, SlotExhaustion):
        attack.restart_probe = False
    if isinstance(attack, BlockRequestAmplification):
        attack.min_head = 0
    return attack


async def attack_until_done(load: subprocess.Popen[bytes], factory: Callable[[], Attack]) -> tuple[int, list[str]]:
    """Run rounds of an attack until the load process exits: (rounds started, what the
    rounds that did not finish raised, e.g. a connection refused by a ban)."""
    rounds, errors = 0, []
    while load.poll() is None:
        attack = factory()
        await asyncio.to_thread(attack.prepare)
        rounds += 1
        task = asyncio.ensure_future(attack.run())
        while not task.done() and load.poll() is None:
            await asyncio.wait({task}, timeout=0.2)
        if not task.done():
            task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        abort_all()  # what a cancelled round left open must not hold the next round's slots
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            errors.append(type(outcome).__name__)
            await asyncio.sleep(0.5)  # a refused round: the next one from a fresh /16
    return rounds, errors


def phase(net: Testnet, work: Path, name: str, txs: int, senders: int,
          factory: Callable[[], Attack] | None) -> dict[str, Any]:
    """bench/load.py at full load, under `factory`'s attack rounds if given; its figures."""
    out = work / f"load-{name.replace(' ', '_')}.json"
    command = [sys.executable, str(ROOT / "bench" / "load.py"), "transfers", "--faucet",
               str(net.directory / "accounts" / "faucet.json"), "--txs", str(txs),
               "--senders", str(senders), "--out", str(out)]
    for node in net.nodes:
        command += ["--node", node.url]
    sampler = RssSampler(net)
    sampler.start()
    began = time.monotonic()
    load = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    rounds, errors = asyncio.run(attack_until_done(load, factory)) if factory is not None else (0, [])
    code = load.wait()
    growth = sampler.stop()
    if code != 0:
        raise RuntimeError(f"bench/load.py exited with {code} during {name}")
    result = json.loads(out.read_text())
    return {"tx_per_second": result["tx_per_second"], "latency_ms": result["latency_ms"],
            "txs": result["txs_final"], "attack_rounds": rounds, "rounds_failed": dict(Counter(errors)),
            "seconds": round(time.monotonic() - began, 1),
            "rss_growth_mib": max(growth.values(), default=0.0)}


def run(work: Path, txs: int = 6_000, senders: int = 400,
        attacks: tuple[type[Attack], ...] = ATTACKS) -> dict[str, Any]:
    """The unattacked phase, then one phase per attack of `attacks` (`txs` transfers from
    `senders` accounts each), on one fresh testnet in `work`."""
    rounds = _Rounds()
    with Testnet(work / "under-attack", Manifest(validators=4)) as net:
        field = prepare_battlefield(net)
        phase(net, work, "warm-up", max(1000, txs // 4), senders, None)  # caches and workers warm, not reported
        before = phase(net, work, "unattacked", txs, senders, None)
        attacked: dict[str, Any] = {}
        for kind in attacks:
            def factory(kind: type[Attack] = kind) -> Attack:
                return make_attack(kind, field, rounds.take())
            attacked[kind.name] = phase(net, work, kind.name, txs, senders, factory)
            print(f"  {kind.name}: {attacked[kind.name]['tx_per_second']} tx/s, "
                  f"RSS +{attacked[kind.name]['rss_growth_mib']} MiB, {attacked[kind.name]['attack_rounds']} "
                  f"rounds (failed: {attacked[kind.name]['rounds_failed']})", flush=True)
        after = phase(net, work, "unattacked again", txs, senders, None)
    base = (before["tx_per_second"] + after["tx_per_second"]) / 2 or 1.0
    results: dict[str, Any] = {"unattacked": {**before, "tx_per_second": round(base, 1),
                                              "before_attacks": before["tx_per_second"],
                                              "after_attacks": after["tx_per_second"]}}
    for name, entry in attacked.items():
        entry["vs_unattacked"] = round(entry["tx_per_second"] / base, 3)
        entry["met"] = entry["vs_unattacked"] >= THROUGHPUT_TARGET and entry["rss_growth_mib"] < MAX_RSS_GROWTH_MIB
        results[name] = entry
    return results


def rows(results: dict[str, Any], yardstick: float) -> list[list[str]]:
    """The table rows of bench/run.py (its columns), one per phase."""
    lines = []
    for name, entry in results.items():
        latency = entry.get("latency_ms") or {}
        cells = [str(latency.get(key, "")) for key in ("p50", "p95", "p99")]
        if name == "unattacked":
            lines.append([f"4 authorities, unattacked (before {entry['before_attacks']}, after "
                          f"{entry['after_attacks']})", str(entry["tx_per_second"]),
                          f"{entry['tx_per_second'] / yardstick:.3f}", *cells, "", ""])
            continue
        lines.append([f"under attack: {name} ({entry['vs_unattacked']:.2f} x, RSS +{entry['rss_growth_mib']} MiB)",
                      str(entry["tx_per_second"]), f"{entry['tx_per_second'] / yardstick:.3f}", *cells,
                      f">= {THROUGHPUT_TARGET} x, < {MAX_RSS_GROWTH_MIB:g} MiB", "met" if entry["met"] else "MISSED"])
    return lines


def main() -> None:
    """Run the under-attack phases alone and print their rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=6_000, help="transfers of each phase")
    parser.add_argument("--senders", type=int, default=400, help="accounts sending them")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "under_attack.json")
    parser.add_argument("--attacks", default=",".join(str(kind.number) for kind in ATTACKS),
                        help="which attacks, by the harness's numbers (default: all), e.g. --attacks 3")
    arguments = parser.parse_args()
    chosen = {part.strip() for part in arguments.attacks.split(",") if part.strip()}
    attacks = tuple(kind for kind in ATTACKS if str(kind.number) in chosen)
    if not attacks:
        parser.error(f"--attacks: none of {sorted(chosen)} is an attack number "
                     f"({', '.join(f'{kind.number} {kind.name}' for kind in ATTACKS)})")
    sys.path.insert(0, str(ROOT / "bench"))
    import state_machine

    yardstick = state_machine.ed25519_rate()
    with tempfile.TemporaryDirectory(prefix="marketchain-attack-") as directory:
        results = run(Path(directory), arguments.txs, arguments.senders, attacks)
    yardstick = max(yardstick, state_machine.ed25519_rate())
    for line in rows(results, yardstick):
        print("  ".join(line))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps({"ed25519_verifications_per_second": round(yardstick),
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
