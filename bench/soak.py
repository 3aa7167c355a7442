"""Soak run: a testnet under load with random faults for a while, then every check (docs/faults.md).

    make soak                                      # 600 s, a fresh seed
    make soak SOAK_ARGS="--duration 1800 --seed 42"
    .venv/bin/python bench/soak.py --duration 300 --seed 42 [--validators 4] [--network auto|netns|loopback]
                                   [--equivocate] [--rate 4] [--home DIR] [--keep]

The schedule is `tests/e2e/harness/scenarios.random_scenario(seed, duration, …)`: episodes of
one fault each (kill -9, SIGSTOP, SIGTERM restart, clock skew within and beyond the
drift, two validators down, every node killed at once, late full nodes and, with
network namespaces, disconnects, 2|2 splits and 1|n splits), each undone after a few
seconds. The seed is printed first: the same seed gives the same schedule and load.
The checks are those of the fault matrix; the exit status is 0 only if all pass. The
testnet directory is removed after a passing run unless --keep, and kept (for its
node.log files) after a failing one.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.fault_scenarios import random_scenario, run_scenario  # noqa: E402
from tests.e2e.testnet_harness import netns_unavailable_reason  # noqa: E402


def parse_arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load and faults (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="schedule and load seed (default: a fresh one)")
    parser.add_argument("--validators", type=int, default=4, help="genesis validators (default 4)")
    parser.add_argument("--network", choices=("auto", "netns", "loopback"), default="auto",
                        help="netns: network cuts too (needs root); auto: netns when possible")
    parser.add_argument("--equivocate", action="store_true", help="node1 signs conflicting prevotes")
    parser.add_argument("--rate", type=float, default=4.0, help="transfers per second (default 4)")
    parser.add_argument("--home", type=Path, default=None, help="testnet directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory after a passing run")
    arguments = parser.parse_args()
    if arguments.duration < 20:
        parser.error("--duration must be at least 20 s")
    return arguments


def main() -> int:
    """Run one soak; 0 when every check passed."""
    arguments = parse_arguments()
    seed = arguments.seed if arguments.seed is not None else secrets.randbelow(2**31)
    reason = netns_unavailable_reason() if arguments.network != "loopback" else "not asked for"
    if arguments.network == "netns" and reason is not None:
        print(f"network namespaces unavailable: {reason}", file=sys.stderr)
        return 2
    netns = reason is None
    print(f"soak seed={seed} duration={arguments.duration:.0f}s validators={arguments.validators} "
          f"network={'netns' if netns else 'loopback'} equivocate={arguments.equivocate} rate={arguments.rate}",
          flush=True)
    if not netns:
        print(f"  (no network cuts: {reason})", flush=True)
    print(f"  rerun: make soak SOAK_ARGS='--seed {seed} --duration {arguments.duration:.0f}"
          f"{' --network loopback' if not netns else ''}{' --equivocate' if arguments.equivocate else ''}'",
          flush=True)
    scenario = random_scenario(seed, arguments.duration, arguments.validators, netns, arguments.equivocate,
                               arguments.rate)
    print("schedule:", flush=True)
    for step in scenario.steps:
        print(f"  t={step.at_s:6.1f}s {step.describe()}{f'  [expect {step.expect}]' if step.expect else ''}",
              flush=True)
    home = arguments.home or Path(tempfile.mkdtemp(prefix="marketchain-soak-"))
    started = time.monotonic()
    try:
        report = run_scenario(scenario, home / "net", seed=seed, log=lambda line: print(line, flush=True))
    except BaseException as error:
        print(f"soak seed={seed} ABORTED after {time.monotonic() - started:.0f} s: {error}", flush=True)
        print(f"node logs kept in {home}", flush=True)
        raise
    print(report.summary(), flush=True)
    if report.ok:
        print(f"soak seed={seed} PASSED in {report.duration_s:.0f} s", flush=True)
        if not arguments.keep and arguments.home is None:
            shutil.rmtree(home, ignore_errors=True)
        return 0
    print(f"soak seed={seed} FAILED: {len(report.failures())} checks; node logs kept in {home}", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
