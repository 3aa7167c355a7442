"""`marketchain merchant replay` against a real receiver on loopback (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands.merchant import merchant
from client.merchant.config import load_config
from client.merchant.dead_letters import read_dead_letters
from client.merchant.outbox import WebhookOutbox
from tests.e2e.webhook_receiver import WebhookReceiver

SECRET = "whsec_replay_command"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(SECRET.encode())
    server.start_in_thread()
    yield server
    server.stop_thread()


def write_config(directory: Path, url: str) -> Path:
    path = directory / "merchant.toml"
    path.write_text(f'[agent]\nstate_dir = "state"\n[webhook]\nurl = "{url}"\nsecret_env = "HOOK_SECRET"\n')
    return path


def dead_letters_of(config_path: Path, count: int) -> list[str]:
    """`count` events kept straight in the dead letters (an outbox that takes none)."""
    config = load_config(config_path, {"HOOK_SECRET": SECRET})
    outbox = WebhookOutbox(config.webhook, config.outbox_dir, max_pending=0)
    ids = [f"evt_{number:032x}" for number in range(count)]
    for event_id in ids:
        assert outbox.enqueue(event_id, "order.delivered", {"order": {"id": event_id}, "to": "delivered"})
    return ids


def run(config_path: Path, *arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(merchant, ["replay", "--config", str(config_path), *arguments],
                                env={"HOOK_SECRET": SECRET})
    return result.exit_code, result.output


def test_replay_lists_then_sends_and_exits_1_while_any_fails(receiver: WebhookReceiver,
                                                             tmp_path: Path) -> None:
    config_path = write_config(tmp_path, receiver.url)
    first, second = dead_letters_of(config_path, 2)
    code, output = run(config_path)
    assert code == 0 and first in output and second in output and "--all" in output
    assert receiver.requests == []

    receiver.policy = lambda number, event_id, attempt: "fail" if event_id == second else "ok"
    code, output = run(config_path, "--all")
    assert code == 1
    assert f"{first}  delivered" in output and f"{second}  failed: HTTP 500" in output
    outbox_dir = load_config(config_path, {"HOOK_SECRET": SECRET}).outbox_dir
    assert [letter.id for letter in read_dead_letters(outbox_dir)] == [second]

    receiver.policy = lambda number, event_id, attempt: "ok"
    code, output = run(config_path, "--id", second, "--id", "evt_unknown")
    assert code == 1 and f"{second}  delivered" in output and "evt_unknown  failed: not found" in output
    code, output = run(config_path, "--id", "evt_unknown")
    assert code == 1
    assert read_dead_letters(outbox_dir) == []
    assert set(receiver.delivered) == {first, second}
    assert json.loads(receiver.delivered[second])["type"] == "order.delivered"
    assert all(request.signature_ok for request in receiver.requests)
    assert run(config_path, "--all") == (0, "no dead letters\n")


def test_replay_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "merchant.toml"
    path.write_text('[webhook]\nurl = "http://127.0.0.1:9/hooks"\nsecret = "s"\nretries = 3\n')
    code, output = run(path, "--all")
    assert code == 2 and "retries" in output
    path.write_text('[agent]\nstate_dir = "state"\n')
    code, output = run(path, "--all")
    assert code == 2 and "[webhook]" in output
