"""Operator experience: structured logs, per-module levels, configuration layers, `--json`, clear errors."""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from client.commands import command_line
from client.progress import Steps, bars_enabled, sync_summary, watch_sync
from client.testnet import create_testnet, node_environment
from marketplace_tx.chain.params import Params
from node.commands import COMMANDS, NODE_COMMANDS, USER_ERRORS
from node.config import (
    ConfigError,
    NodeConfig,
    Override,
    config_to_json,
    effective_config,
    environment_variable,
    load_config,
    option_names,
)
from node.home import init_home
from node.logging_setup import (
    LevelSpecError,
    configure_logging,
    log_fields,
    parse_level_spec,
    redact,
    reset_logging,
)
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
main = command_line(commands=COMMANDS, node_commands=NODE_COMMANDS, user_errors=USER_ERRORS)
"""The whole `marketchain` command, assembled as cli.py does (nothing imports cli.py)."""
SECRET_HEX = "9f" * 32


@pytest.fixture
def log_to() -> Iterator:
    """configure_logging into a StringIO; undo it afterwards."""

    def configure(level: str, log_format: str = "plain") -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, log_format, stream=stream)
        return stream

    yield configure
    reset_logging()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path)
    return path


# --- logs ---------------------------------------------------------------------------


def test_json_lines_parse_and_carry_level_logger_message(log_to) -> None:  # type: ignore[no-untyped-def]
    stream = log_to("debug", "json")
    logging.getLogger("marketchain.sync").info("synced to %d of %d", 5, 9, extra={"peer": b"\x01\x02"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("marketchain.http").exception("internal error")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info" and first["logger"] == "marketchain.sync"
    assert first["message"] == "synced to 5 of 9" and first["peer"] == "0102"
    assert datetime.fromisoformat(first["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_plain_lines_show_level_logger_and_extra_fields(log_to) -> None:  # type: ignore[no-untyped-def]
    stream = log_to("info", "plain")
    logging.getLogger("marketchain.node").warning("stopping", extra={"height": 7})
    line = stream.getvalue().strip()
    assert " WARNING marketchain.node: stopping height=7" in line


def test_structured_fields_are_json_keys_and_leave_plain_lines_as_they_were(log_to) -> None:  # type: ignore[no-untyped-def]
    fields = log_fields(event="block_final", height=12, block=b"\xab\xcd", txs=3)
    stream = log_to("info", "json")
    logging.getLogger("marketchain.consensus").info("final %d abcd round=0 txs=3", 12, extra=fields)
    line = json.loads(stream.getvalue())
    assert line["message"] == "final 12 abcd round=0 txs=3"
    assert (line["event"], line["height"], line["block"], line["txs"]) == ("block_final", 12, "abcd", 3)
    assert line["logger"] == "marketchain.consensus" and line["level"] == "info"
    stream = log_to("info", "plain")
    logging.getLogger("marketchain.consensus").info("final %d abcd round=0 txs=3", 12, extra=fields)
    logging.getLogger("marketchain.consensus").info("final %d abcd round=0 txs=3", 12)
    with_fields, without = stream.getvalue().splitlines()
    assert with_fields.endswith("INFO marketchain.consensus: final 12 abcd round=0 txs=3")
    assert with_fields.partition(" INFO ")[2] == without.partition(" INFO ")[2]


def test_structured_fields_are_redacted_by_name_and_value(log_to) -> None:  # type: ignore[no-untyped-def]
    stream = log_to("info", "json")
    logging.getLogger("marketchain.node").info(
        "loaded", extra=log_fields(seed=SECRET_HEX, note=f"secret {SECRET_HEX}", peer="ab" * 32))
    line = json.loads(stream.getvalue())
    assert line["seed"] == "[REDACTED]" and SECRET_HEX not in line["note"] and line["peer"] == "ab" * 32


def test_the_mempool_journal_logs_with_structured_fields(log_to, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from node.mempool_journal import MempoolJournal

    stream = log_to("info", "json")
    path = tmp_path / "mempool.journal"
    path.write_bytes(b"torn")
    MempoolJournal(path, 1 << 20).load()
    line = json.loads(stream.getvalue())
    assert line["event"] == "journal_truncated" and line["bytes"] == 4 and line["kept"] == 0


def test_per_module_levels_filter(log_to) -> None:  # type: ignore[no-untyped-def]
    stream = log_to("p2p:debug,marketchain.consensus:info,*:warning", "json")
    logging.getLogger("p2p.peer").debug("p2p detail")
    logging.getLogger("marketchain.node").debug("node detail")
    logging.getLogger("marketchain.node").info("node news")
    logging.getLogger("marketchain.consensus").info("final 3")
    logging.getLogger("marketchain.consensus").debug("consensus detail")
    logging.getLogger("marketchain.node").warning("node warning")
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["p2p detail", "final 3", "node warning"]
    # Reconfiguring forgets the previous per-module levels.
    stream = log_to("warning", "json")
    logging.getLogger("p2p.peer").debug("hidden now")
    assert stream.getvalue() == ""


def test_level_specs_parse_and_bad_ones_say_why() -> None:
    assert parse_level_spec("info").default == logging.INFO
    spec = parse_level_spec(" p2p:DEBUG , *:warn ")
    assert spec.default == logging.WARNING and spec.loggers == {"p2p": logging.DEBUG}
    for bad, fragment in (("p2p:loud", "unknown level 'loud'"), (":debug", "logger name is missing"), ("", "empty")):
        with pytest.raises(LevelSpecError, match=fragment):
            parse_level_spec(bad)


def test_seeds_and_secrets_are_redacted(log_to) -> None:  # type: ignore[no-untyped-def]
    stream = log_to("debug", "json")
    address = "ab" * 32
    logging.getLogger("marketchain.node").info("key secret_seed=%s address %s", SECRET_HEX, address)
    logging.getLogger("marketchain.node").info('{"secret_seed": "%s"}', SECRET_HEX.upper())
    logging.getLogger("marketchain.node").info("loaded", extra={"seed": SECRET_HEX, "validator": address})
    text = stream.getvalue()
    assert SECRET_HEX not in text.lower()
    assert text.count("[REDACTED]") == 3
    assert address in text, "public addresses are not secrets"
    assert redact(f"block {address} proposed") == f"block {address} proposed"


LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def test_no_log_call_touches_key_material() -> None:
    suspicious = []
    files = [ROOT / "cli.py"] + [path for package in ("node", "p2p", "consensus", "mempool")
                                 for path in sorted((ROOT / package).rglob("*.py"))]
    for path in files:
        for call in ast.walk(ast.parse(path.read_text())):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in LOG_METHODS and isinstance(call.func.value, ast.Name)
                    and call.func.value.id in ("log", "logger", "logging")):
                text = ast.unparse(call).lower()
                if any(word in text for word in (".seed", "secret", "passphrase", "private")):
                    suspicious.append(f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(call)}")
    assert not suspicious, suspicious


# --- configuration layers -----------------------------------------------------------


def test_environment_overrides_every_kind_of_option(home: Path) -> None:
    peers = f"{'cd' * 32}@10.0.0.2:26656, 10.0.0.3:26656"
    config = effective_config(home, {
        "MARKETCHAIN_HTTP_PORT": "9000", "MARKETCHAIN_P2P_PERSISTENT_PEERS": peers, "MARKETCHAIN_MONIKER": "shop-1",
        "MARKETCHAIN_LOG_LEVEL": "p2p:debug,*:warning", "MARKETCHAIN_LOG_FORMAT": "json",
        "MARKETCHAIN_NODE": "http://elsewhere:1", "MARKETCHAIN_KEY": "alice",
    })
    assert config.http.port == 9000 and config.moniker == "shop-1"
    assert config.p2p.persistent_peers == (f"{'cd' * 32}@10.0.0.2:26656", "10.0.0.3:26656")
    assert (config.log.level, config.log.format) == ("p2p:debug,*:warning", "json")
    assert effective_config(home, {"MARKETCHAIN_P2P_PERSISTENT_PEERS": ""}).p2p.persistent_peers == ()


@pytest.mark.parametrize(
    ("in_file", "in_environment", "flag", "expected"),
    [
        (None, None, None, 26657),
        (1111, None, None, 1111),
        (1111, "2222", None, 2222),
        (None, "2222", None, 2222),
        (1111, "2222", 3333, 3333),
        (None, None, 3333, 3333),
    ],
)
def test_precedence_flag_over_environment_over_file_over_default(
    tmp_path: Path, in_file: int | None, in_environment: str | None, flag: int | None, expected: int
) -> None:
    (tmp_path / "config.toml").write_text(f"[http]\nport = {in_file}\n" if in_file else "")
    environ = {"MARKETCHAIN_HTTP_PORT": in_environment} if in_environment else {}
    overrides = [Override("http.port", flag, "--http-port")] if flag else []
    assert effective_config(tmp_path, environ, overrides).http.port == expected


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("MARKETCHAIN_HTTP_PORT", "abc", "must be an integer"),
        ("MARKETCHAIN_HTTP_PORT", "70000", "out of range"),
        ("MARKETCHAIN_P2P_PORT", "-1", "out of range"),
        ("MARKETCHAIN_MEMPOOL_MAX_BYTES", "0", "at least 1"),
        ("MARKETCHAIN_LOG_FORMAT", "xml", "plain or json"),
        ("MARKETCHAIN_LOG_LEVEL", "p2p:loud", "unknown level"),
        ("MARKETCHAIN_P2P_PERSISTENT_PEERS", "just-a-host", "not a peer address"),
        ("MARKETCHAIN_HTTP_PROT", "9000", "not a configuration option"),
    ],
)
def test_bad_environment_values_name_the_variable(home: Path, variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        effective_config(home, {variable: value})
    assert variable in str(raised.value) and fragment in str(raised.value)


def test_bad_flags_and_file_values_name_where(home: Path) -> None:
    with pytest.raises(ConfigError, match="--set mempool.max_bytes must be an integer"):
        effective_config(home, {}, [Override("mempool.max_bytes", "lots", "--set mempool.max_bytes")])
    with pytest.raises(ConfigError, match="unknown option 'http.speed'"):
        effective_config(home, {}, [Override("http.speed", "1", "--set http.speed")])
    (home / "config.toml").write_text('[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match="config.toml: log.format must be plain or json"):
        load_config(home)


def test_cli_reports_config_errors_without_traceback(home: Path) -> None:
    runner = CliRunner()
    bad_env = runner.invoke(main, ["node", "start", "--home", str(home)], env={"MARKETCHAIN_HTTP_PORT": "x"})
    assert bad_env.exit_code == 1 and "MARKETCHAIN_HTTP_PORT must be an integer" in bad_env.output
    bad_flag = runner.invoke(main, ["node", "start", "--home", str(home), "--log-level", "p2p:loud"])
    assert bad_flag.exit_code == 1 and "--log-level" in bad_flag.output
    (home / "config.toml").write_text("[http\nport = 1")
    malformed = runner.invoke(main, ["node", "start", "--home", str(home)])
    assert malformed.exit_code == 1 and "not valid TOML" in malformed.output
    missing = runner.invoke(main, ["node", "start", "--home", str(home.parent / "nowhere")])
    assert missing.exit_code == 1 and "marketchain init --home" in missing.output
    no_testnet = runner.invoke(main, ["testnet", "status", "--home", str(home.parent / "nowhere")])
    assert no_testnet.exit_code == 1 and "testnet start --home" in no_testnet.output
    for result in (bad_env, bad_flag, malformed, missing, no_testnet):
        assert isinstance(result.exception, SystemExit), result.exception


def test_config_show_round_trips_and_prints_no_secret(home: Path, tmp_path: Path) -> None:
    environ = {"MARKETCHAIN_HTTP_PORT": "9100", "MARKETCHAIN_MONIKER": 'say "hi"',
               "MARKETCHAIN_P2P_PERSISTENT_PEERS": "10.0.0.2:1,10.0.0.3:2", "MARKETCHAIN_LOG_LEVEL": "p2p:debug"}
    runner = CliRunner()
    shown = runner.invoke(main, ["config", "show", "--home", str(home), "--set", "log.format=json"], env=environ)
    assert shown.exit_code == 0, shown.output
    expected = effective_config(home, environ, [Override("log.format", "json", "--set")])
    assert expected.http.port == 9100 and expected.log.format == "json"
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.toml").write_text(shown.output)
    assert load_config(copy) == expected
    as_json = runner.invoke(main, ["config", "show", "--home", str(home), "--json"], env=environ)
    assert json.loads(as_json.output) == config_to_json(effective_config(home, environ))
    seeds = [json.loads((home / name).read_text())["secret_seed"] for name in ("validator_key.json", "node_key.json")]
    assert not any(seed in shown.output + as_json.output for seed in seeds)


def test_every_option_is_documented_with_its_variable() -> None:
    default_file = (ROOT / "configs" / "default.toml").read_text()
    documentation = (ROOT / "docs" / "configuration.md").read_text()
    values = tomllib.loads(default_file)
    for option in option_names():
        section, _, name = option.rpartition(".")
        assert name in (values[section] if section else values), option
        assert environment_variable(option) in documentation, option
        assert environment_variable(option) in default_file, option
        assert (f"`[{section}] {name}`" if section else f"`{name}`") in documentation, option
    assert load_config_from_text(default_file) == NodeConfig()


def load_config_from_text(text: str) -> NodeConfig:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "config.toml").write_text(text)
        return load_config(Path(directory))


# --- CLI: --json everywhere, errors, progress ---------------------------------------


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


READ_COMMANDS = ("keys list", "keys show", "testnet status", "config show", "node sync-status", "verify tx",
                 "verify account", "verify order", "verify state", "verify shop", "verify listing", "verify item")


def test_every_read_command_has_json() -> None:
    commands = dict(_commands(main))
    reads = [path for path in commands if path.startswith("query ") or path in READ_COMMANDS]
    assert len(reads) >= 14 + len(READ_COMMANDS), reads
    missing = [path for path in reads
               if not any("--json" in parameter.opts for parameter in commands[path].params
                          if isinstance(parameter, click.Option))]
    assert not missing, f"read commands without --json: {missing}"


def test_port_in_use_fails_clearly(home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cli", "node", "start", "--home", str(home), "--http-port", str(port),
             "--p2p-port", "0"],
            cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            env={**os.environ, "MARKETCHAIN_LOG_FORMAT": "json"},
        )
    assert result.returncode == 1, result.stderr
    assert f"port {port} is in use" in result.stderr and "--http-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_node_sync_status_is_clear() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(main, ["node", "sync-status", "--node", f"http://127.0.0.1:{port}", "--json"])
    assert result.exit_code == 1 and "unreachable" in result.output and "is a node running" in result.output


def test_testnet_status_shows_sync_column_for_stopped_nodes(tmp_path: Path) -> None:
    create_testnet(tmp_path / "net", 1, 20000, Params())
    runner = CliRunner()
    table = runner.invoke(main, ["testnet", "status", "--home", str(tmp_path / "net")])
    assert table.exit_code == 0 and "sync" in table.output.splitlines()[0]
    rows = json.loads(runner.invoke(main, ["testnet", "status", "--home", str(tmp_path / "net"), "--json"]).output)
    assert rows[0]["running"] is False and "error" in rows[0]


def test_progress_bars_only_on_a_terminal_and_not_quiet() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not bars_enabled(False, io.StringIO())
    assert bars_enabled(False, Terminal()) and not bars_enabled(True, Terminal())
    lines = io.StringIO()
    with Steps("nodes serving", 2, stream=lines) as steps:
        steps.advance("node0 serving http://a")
        steps.advance("node1 serving http://b")
    assert lines.getvalue().splitlines() == ["node0 serving http://a", "node1 serving http://b"]
    silent = io.StringIO()
    with Steps("nodes serving", 1, quiet=True, stream=silent) as steps:
        steps.advance("node0 serving")
    assert silent.getvalue() == ""
    drawn = Terminal()
    with Steps("nodes serving", 1, stream=drawn) as steps:
        steps.advance("node0 serving")
    assert "nodes serving" in drawn.getvalue()


def test_watch_sync_follows_until_caught_up() -> None:
    heights = iter([10, 60, 100])

    def status() -> dict:
        height = next(heights)
        return {"height": height, "peers": 3, "syncing": height < 100,
                "sync": {"height": height, "target": 100, "syncing": height < 100}}

    now = [0.0]
    lines = io.StringIO()
    summary = watch_sync(status, stream=lines, clock=lambda: now[0],
                         sleep=lambda seconds: now.__setitem__(0, now[0] + 6))
    assert summary == {"height": 100, "target": 100, "behind": 0, "percent": 100.0, "syncing": False, "peers": 3}
    assert lines.getvalue().splitlines() == ["syncing 10 of 100 (10.0%)", "syncing 60 of 100 (60.0%)",
                                             "synced at 100"]
    stuck = {"height": 5, "syncing": True, "sync": {"height": 5, "target": 50}}
    with pytest.raises(TimeoutError, match="syncing 5 of 50"):
        watch_sync(lambda: stuck, quiet=True, timeout_s=1, clock=lambda: now[0],
                   sleep=lambda seconds: now.__setitem__(0, now[0] + 1))
    assert sync_summary({"height": 0})["percent"] == 100.0


def test_testnet_nodes_do_not_inherit_per_node_variables() -> None:
    kept = node_environment({"MARKETCHAIN_HTTP_PORT": "9000", "MARKETCHAIN_P2P_PERSISTENT_PEERS": "a:1",
                             "MARKETCHAIN_LOG_LEVEL": "debug", "PATH": "/bin"})
    assert kept == {"MARKETCHAIN_LOG_LEVEL": "debug", "PATH": "/bin"}
