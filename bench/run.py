"""The performance benchmark: one command, every scenario, one table (docs/performance.md).

    make bench                      # or: .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --only single,sync --chain-txs 1000000   # full-size sync and memory

It measures, in this order and all in the same run:

- the yardstick: Ed25519 verifications per second on one core (`state_machine.ed25519_rate`),
  at the start and at the end (the higher one is used, which is the stricter choice);
- `state`: the state machine alone, no signatures, no storage: transfers and every
  marketplace transaction type through `build_block` (bench/state_machine.py, bench/marketplace.py);
- `single`: one authority (`marketchain testnet start --nodes 1`), transfers at full load
  from a separate process (bench/load.py) over `POST /txs/batch`;
- `memory` and `sync`: the same chain topped up to `--chain-txs` transactions, then the
  node's RSS and LevelDB bytes per transaction, then a fresh full node that replays the
  whole chain by block sync (R30);
- `market`: a marketplace workload on one authority: orders through completion and a review;
- `four`: four authorities on loopback, the load spread over all of them: first at full
  load, then at half of the rate measured, for the latency at half load;
- `attack`: four authorities again, the same full load unattacked and then during each
  attack of the adversary harness (bench/under_attack.py): honest final tx/s under
  attack ÷ unattacked (target ≥ 0.7) and each phase's largest node RSS growth (< 64 MiB);
- `tree`: the state tree (bench/state_tree.py): root update µs per changed key in trees of
  10,000 to 1,000,000 accounts (LevelDB and memory), proof size and time at the largest
  (targets ≤ 2 KB and < 5 ms), tree bytes per account, proofs 10/100/1,000 heights back;
- `statesync`: a chain of `--statesync-txs` transfers over `--statesync-accounts` accounts
  (1,000,000 and 100,000) joined by a fresh node by block sync and by state sync
  (bench/state_sync.py): wall time to a node that serves correct state and follows the
  chain (target: state sync ≤ 10 % of block sync) and the joiner's peak RSS (≤ 300 MB).

Every node runs on 127.0.0.1 and is stopped in a `finally` block. The table is printed
and written to bench/results/run.json. Numbers on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import marketplace
import state_machine
import state_sync
import state_tree
import under_attack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # after bench/ itself: the test harness's ports and process scan

from node.config import HttpConfig, P2pConfig  # noqa: E402
from node.home import init_home, read_genesis  # noqa: E402
from tests.e2e.harness import ports as harness_ports  # noqa: E402
from tests.e2e.harness.processes import child_pids  # noqa: E402

PYTHON = sys.executable
SCENARIOS = ("state", "single", "memory", "sync", "market", "four", "attack", "tree", "statesync")
TARGETS = {
    "single": 0.40,
    "four": 0.10,
    "sync": 0.50,
}
"""Final tx/s targets as a fraction of one core's Ed25519 verifications per second."""
STATE_TARGET = 20_000
"""Transfers per second of the state machine alone."""
RSS_TARGET_MB = 300
FULL_SIZE_TXS = 1_000_000
"""Chain length at which the memory and storage targets are set."""
LEVELDB_TARGET_BYTES = 400
FOUR_P95_TARGET_MS = 1500


def free_base_port(count: int = 100, first: int = 36000) -> int:
    """A first port P with P … P+count−1 all free on loopback (others may be testing too)."""
    return harness_ports.free_base_port(count, first)


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


process_memory_mb = state_sync.memory_mb
"""Resident set size now and at its peak (VmHWM) of a process, in MB."""


def worker_memory_mb(pid: int) -> dict[str, float]:
    """RSS of the node's signature worker processes (its `multiprocessing.spawn` children)."""
    workers = child_pids(pid, b"spawn_main")
    total = sum(process_memory_mb(worker)["rss_mb"] for worker in workers)
    return {"worker_processes": len(workers), "workers_rss_mb": round(total, 1)}


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def committed_txs(url: str) -> int:
    """Transactions in final blocks, from the node's Prometheus metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(value) for value in re.findall(r"^marketchain_txs_committed_total\{[^}]*\} (\S+)$", text, re.M)))


@contextmanager
def testnet(directory: Path, nodes: int, base_port: int, params: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """`marketchain testnet start`, yielding testnet.json; always `testnet stop` afterwards."""
    command = [PYTHON, "-m", "cli", "testnet", "start", "--nodes", str(nodes), "--home", str(directory),
               "--base-port", str(base_port), "--quiet"]
    for param in params:
        command += ["--param", param]
    try:
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        yield json.loads((directory / "testnet.json").read_text())
    finally:
        subprocess.run([PYTHON, "-m", "cli", "testnet", "stop", "--home", str(directory)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def load(mode: str, urls: list[str], faucet: Path, out: Path, *options: str) -> dict[str, Any]:
    """Run bench/load.py in its own process and return its JSON result."""
    command = [PYTHON, str(ROOT / "bench" / "load.py"), mode, "--faucet", str(faucet), "--out", str(out), *options]
    for url in urls:
        command += ["--node", url]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def row(result: dict[str, Any], yardstick: float) -> dict[str, Any]:
    return {
        "tx_per_second": result["tx_per_second"],
        "vs_ed25519": round(result["tx_per_second"] / yardstick, 3),
        "latency_ms": result["latency_ms"],
        "txs": result["txs_final"],
        "largest_block_txs": result.get("largest_block_txs"),
    }


# --- scenarios ---------------------------------------------------------------------------


def scenario_state(arguments: argparse.Namespace) -> dict[str, Any]:
    transfers = state_machine.measure(arguments.state_txs)
    market = marketplace.run(arguments.state_orders, 20, 200)
    return {
        "transfers_per_second": transfers["transfers_applied_per_second"],
        "decode_and_stateless_checks_per_second": transfers["decode_and_stateless_checks_per_second"],
        "per_type_per_second": {"transfer": transfers["transfers_applied_per_second"],
                                **market["per_type_per_second"]},
        "order_transitions_per_second": market["order_transitions_per_second"],
    }


def scenario_tree(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The state tree's figures (bench/state_tree.py), without the profile's full text."""
    accounts = [int(value) for value in arguments.tree_accounts.split(",") if value.strip()]
    try:
        results = state_tree.run(work / "tree", accounts, history_blocks=arguments.tree_history_blocks)
    except Exception as error:  # a bench failure is reported in the table's run, never ends it
        raise RuntimeError(f"state tree bench: {error!r}") from error
    results.get("profile", {}).pop("text", None)
    return results


def scenario_single(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One authority at full load; then the chain topped up for the memory and sync figures."""
    directory = work / "single"
    results: dict[str, Any] = {}
    with testnet(directory, 1, arguments.base_port) as description:
        node = description["nodes"][0]
        faucet = directory / "accounts" / "faucet.json"
        if "single" in arguments.only:
            cpu_before = process_cpu_seconds(node["pid"])
            measured = load("transfers", [node["http"]], faucet, work / "single.json",
                            "--txs", str(arguments.txs), "--senders", str(arguments.senders))
            node_cpu = process_cpu_seconds(node["pid"]) - cpu_before
            results["single"] = {**row(measured, 1.0),
                                 "node_cpu_us_per_tx": round(1e6 * node_cpu / measured["txs_final"])}
        if not {"memory", "sync"} & set(arguments.only):
            return results
        total = committed_txs(node["http"])
        while total < arguments.chain_txs:
            batch = min(arguments.chain_txs - total, 200_000)
            load("transfers", [node["http"]], faucet, work / "fill.json", "--txs", str(batch),
                 "--senders", str(max(arguments.senders, batch // 60 + 1)))
            total = committed_txs(node["http"])
        time.sleep(1.0)
        database = Path(node["home"]) / "data" / "chain.db"  # LevelDB only, not the mempool journal beside it
        if "memory" in arguments.only:
            results["memory"] = {
                "txs_in_chain": total,
                **process_memory_mb(node["pid"]),
                **worker_memory_mb(node["pid"]),
                "leveldb_bytes": directory_bytes(database),
                "leveldb_bytes_per_tx": round(directory_bytes(database) / total, 1),
            }
        if "sync" in arguments.only:
            try:
                results["sync"] = sync_fresh_node(directory, node, total, free_base_port(2, arguments.base_port + 100))
            except RuntimeError as error:
                results["sync"] = {"error": str(error)}
    return results


def sync_fresh_node(directory: Path, source: dict[str, Any], total_txs: int, port: int) -> dict[str, Any]:
    """A new full node with the same genesis catches up from `source` (R30)."""
    status = get_json(source["http"] + "/status")
    target = status["height"]
    home = directory / "syncer"
    genesis = read_genesis(Path(source["home"]) / "genesis.json")
    init_home(home, genesis=genesis, http=HttpConfig(port=port + 1),
              p2p=P2pConfig(port=port, persistent_peers=(f"{status['node_id']}@{source['p2p']}",)), moniker="syncer")
    url = f"http://127.0.0.1:{port + 1}"
    with open(home / "node.log", "ab") as log:
        process = subprocess.Popen([PYTHON, "-m", "cli", "node", "start", "--home", str(home)], cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        started = None
        height = 0
        deadline = time.monotonic() + 1800
        while height < target:
            if time.monotonic() > deadline or process.poll() is not None:
                tail = (home / "node.log").read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"the syncing node stopped at height {height} of {target}: " + " | ".join(tail))
            try:
                height = get_json(url + "/status")["height"]
                if started is None:
                    started = time.monotonic()
            except OSError:
                pass
            time.sleep(0.05)
        seconds = time.monotonic() - (started or time.monotonic())
        return {"tx_per_second": round(total_txs / seconds, 1), "txs": total_txs, "blocks": target,
                "seconds": round(seconds, 2), **process_memory_mb(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scenario_market(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    directory = work / "market"
    with testnet(directory, 1, arguments.base_port + 40, ("open_merchants=true",)) as description:
        node = description["nodes"][0]
        result = load("marketplace", [node["http"]], directory / "accounts" / "faucet.json", work / "market.json",
                      "--orders", str(arguments.orders), "--wave", str(arguments.wave))
    return {**row(result, 1.0), "per_type": result.get("per_type"), "failed_receipts_sampled": result.get("receipts_failed")}


def scenario_four(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    directory = work / "four"
    with testnet(directory, 4, arguments.base_port + 60) as description:
        urls = [node["http"] for node in description["nodes"]]
        faucet = directory / "accounts" / "faucet.json"
        full = load("transfers", urls, faucet, work / "four.json", "--txs", str(arguments.four_txs),
                    "--senders", str(arguments.senders))
        rate = full["tx_per_second"] / 2
        half = load("transfers", urls, faucet, work / "four-half.json", "--txs",
                    str(max(1000, int(rate * arguments.half_seconds))), "--senders", str(arguments.senders),
                    "--rate", str(rate))
    return {**row(full, 1.0), "half_load": {"offered_tx_per_second": round(rate, 1), **row(half, 1.0)}}


# --- table -------------------------------------------------------------------------------


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def table(results: dict[str, Any], yardstick: float) -> list[list[str]]:
    lines = [["scenario", "final tx/s", "x ed25519", "p50 ms", "p95 ms", "p99 ms", "target", "status"]]

    def latency(entry: dict[str, Any]) -> list[str]:
        values = entry.get("latency_ms") or {}
        return [str(values.get(name, "")) for name in ("p50", "p95", "p99")]

    if "single" in results:
        entry = results["single"]
        ratio = entry["tx_per_second"] / yardstick
        lines.append(["1 authority, transfers", str(entry["tx_per_second"]), f"{ratio:.3f}", *latency(entry),
                      ">= 0.40 x", verdict(ratio, TARGETS["single"])])
    if "four" in results:
        entry = results["four"]
        ratio = entry["tx_per_second"] / yardstick
        lines.append(["4 authorities, full load", str(entry["tx_per_second"]), f"{ratio:.3f}", *latency(entry),
                      ">= 0.10 x", verdict(ratio, TARGETS["four"])])
        half = entry["half_load"]
        lines.append([f"4 authorities, half load ({half['offered_tx_per_second']}/s)", str(half["tx_per_second"]),
                      f"{half['tx_per_second'] / yardstick:.3f}", *latency(half), "p95 <= 1500 ms",
                      verdict(half["latency_ms"]["p95"], FOUR_P95_TARGET_MS, higher_is_better=False)])
    if "market" in results:
        entry = results["market"]
        lines.append(["marketplace mix, 1 authority", str(entry["tx_per_second"]),
                      f"{entry['tx_per_second'] / yardstick:.3f}", *latency(entry), "", ""])
    if "sync" in results and "error" not in results["sync"]:
        entry = results["sync"]
        ratio = entry["tx_per_second"] / yardstick
        lines.append([f"block sync of {entry['txs']} txs", str(entry["tx_per_second"]), f"{ratio:.3f}", "", "", "",
                      ">= 0.50 x", verdict(ratio, TARGETS["sync"])])
    if "attack" in results:
        lines.extend(under_attack.rows(results["attack"], yardstick))
    if "state" in results:
        entry = results["state"]
        for name, rate in entry["per_type_per_second"].items():
            target = [f">= {STATE_TARGET}", verdict(rate, STATE_TARGET)] if name == "transfer" else ["", ""]
            lines.append([f"state machine: {name}", str(rate), f"{rate / yardstick:.3f}", "", "", "", *target])
    if "tree" in results:
        lines.extend(state_tree.rows(results["tree"], yardstick))
    if "statesync" in results:
        lines.extend(state_sync.rows(results["statesync"], yardstick))
    if "memory" in results:
        entry = results["memory"]
        lines.append([f"node RSS after {entry['txs_in_chain']} txs", f"{entry['rss_mb']} MB", "", "", "", "",
                      f"<= {RSS_TARGET_MB} MB", verdict(entry["rss_mb"], RSS_TARGET_MB, higher_is_better=False)])
        # The target is set after 1,000,000 transactions: below that, up to twice LevelDB's
        # 32 MiB write buffer sits uncompressed in its log, which a short chain cannot amortize.
        full_size = entry["txs_in_chain"] >= FULL_SIZE_TXS
        status = (verdict(entry["leveldb_bytes_per_tx"], LEVELDB_TARGET_BYTES, higher_is_better=False)
                  if full_size else "see --chain-txs 1000000")
        lines.append([f"LevelDB bytes/tx after {entry['txs_in_chain']} txs", str(entry["leveldb_bytes_per_tx"]), "", "",
                      "", "", f"<= {LEVELDB_TARGET_BYTES} at 1M txs", status])
    return lines


def print_table(lines: list[list[str]]) -> None:
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios among {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--txs", type=int, default=40_000, help="transfers of the one-authority run")
    parser.add_argument("--senders", type=int, default=800, help="accounts sending the transfers")
    parser.add_argument("--chain-txs", type=int, default=100_000,
                        help="transactions in the chain for the memory and sync figures (the targets' sizes: "
                             "100,000 for sync, 1,000,000 for memory)")
    parser.add_argument("--four-txs", type=int, default=20_000, help="transfers of the four-authority full-load run")
    parser.add_argument("--half-seconds", type=float, default=15.0, help="length of the half-load run")
    parser.add_argument("--attack-txs", type=int, default=6_000, help="transfers of each under-attack phase")
    parser.add_argument("--orders", type=int, default=2_000, help="orders of the marketplace run")
    parser.add_argument("--wave", type=int, default=500, help="orders placed together in the marketplace run")
    parser.add_argument("--state-txs", type=int, default=20_000, help="transfers of the state-machine run")
    parser.add_argument("--state-orders", type=int, default=3_000, help="orders of the state-machine run")
    parser.add_argument("--tree-accounts", default=",".join(map(str, state_tree.ACCOUNTS)),
                        help="state tree sizes in accounts, comma-separated (proofs at the largest)")
    parser.add_argument("--tree-history-blocks", type=int, default=1001,
                        help="blocks committed before the old-height proofs (1,000 back needs 1,001)")
    parser.add_argument("--statesync-txs", type=int, default=1_000_000, help="transfers of the state-sync chain")
    parser.add_argument("--statesync-accounts", type=int, default=100_000,
                        help="accounts of the state-sync chain (senders + recipients)")
    parser.add_argument("--base-port", type=int, default=0,
                        help="first of the 100 loopback ports used (default: a free range from 36000 up)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the node directories here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run.json")
    arguments = parser.parse_args()
    arguments.only = [name.strip() for name in arguments.only.split(",") if name.strip()]
    unknown = set(arguments.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    if arguments.base_port == 0:
        arguments.base_port = free_base_port()
    started = time.monotonic()
    yardstick_start = state_machine.ed25519_rate()
    print(f"yardstick: {yardstick_start:.0f} Ed25519 verifications/s on one core", flush=True)
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="marketchain-bench-")) if arguments.keep is None else arguments.keep
    work.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if "state" in arguments.only:
        steps.append(("state", lambda: {"state": scenario_state(arguments)}))
    if {"single", "memory", "sync"} & set(arguments.only):
        steps.append(("single, memory, sync", lambda: scenario_single(arguments, work)))
    if "market" in arguments.only:
        steps.append(("market", lambda: {"market": scenario_market(arguments, work)}))
    if "four" in arguments.only:
        steps.append(("four", lambda: {"four": scenario_four(arguments, work)}))
    if "tree" in arguments.only:
        steps.append(("tree", lambda: {"tree": scenario_tree(arguments, work)}))
    if "statesync" in arguments.only:
        plan = state_sync.ChainPlan(arguments.statesync_txs, arguments.statesync_accounts, 1000, 4000)
        steps.append(("statesync", lambda: {"statesync": state_sync.run(work / "statesync", plan, signers=1)}))
    if "attack" in arguments.only:
        steps.append(("attack", lambda: {"attack": under_attack.run(work, arguments.attack_txs, arguments.senders)}))
    try:
        for name, step in steps:
            began = time.monotonic()
            print(f"running {name} …", flush=True)
            try:
                results.update(step())
            except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
                print(f"  {name} FAILED: {error}", flush=True)
                results.setdefault("errors", {})[name] = str(error)
                continue
            print(f"  {name} done in {time.monotonic() - began:.0f} s", flush=True)
    finally:
        if arguments.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    yardstick_end = state_machine.ed25519_rate()
    yardstick = max(yardstick_start, yardstick_end)
    for name in ("single", "four", "market"):
        if name in results:
            results[name]["vs_ed25519"] = round(results[name]["tx_per_second"] / yardstick, 3)
    if "four" in results:
        half = results["four"]["half_load"]
        half["vs_ed25519"] = round(half["tx_per_second"] / yardstick, 3)
    if "sync" in results and "error" not in results["sync"]:
        results["sync"]["vs_ed25519"] = round(results["sync"]["tx_per_second"] / yardstick, 3)
    report = {
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_info(), "python": platform.python_version(),
                    "load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
        "ed25519_verifications_per_second": {"start": round(yardstick_start), "end": round(yardstick_end),
                                             "used": round(yardstick)},
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    lines = table(results, yardstick)
    report["table"] = lines
    print()
    print(f"{report['machine']['cpu']}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"Ed25519 on one core: {yardstick:.0f}/s (start {yardstick_start:.0f}, end {yardstick_end:.0f})")
    print_table(lines)
    for name, error in results.get("errors", {}).items():
        print(f"\n{name} failed: {error}")
    if "sync" in results and "error" in results["sync"]:
        print(f"\nsync failed: {results['sync']['error']}")
    if "memory" in results:
        memory = results["memory"]
        print(f"\nnode peak RSS {memory['peak_rss_mb']} MB; {memory['worker_processes']} signature worker "
              f"process(es) beside it: {memory['workers_rss_mb']} MB; LevelDB {memory['leveldb_bytes']} bytes "
              f"for {memory['txs_in_chain']} txs")
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {arguments.out} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
