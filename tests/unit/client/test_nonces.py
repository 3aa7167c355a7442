"""One key, many terminals (issue 12, point 3): the key's file lock is exclusive, a nonce the
client chose is re-chosen after `bad_nonce`/`duplicate`, a given one never is, and the
"omit --nonce" hint appears only when --nonce was given."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from client.commands.common import client_error_text
from client.node_client import ClientError
from client.nonces import key_lock, lock_path_of, submit_with_fresh_nonce
from marketplace_tx.primitives.crypto import KeyPair


def _hold(lock: str, seconds: float) -> None:
    with key_lock(Path(lock)):
        time.sleep(seconds)


def test_the_key_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "carol.json.lock"
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(str(lock), 0.6))
    holder.start()
    time.sleep(0.2)
    started = time.monotonic()
    with key_lock(lock):
        waited = time.monotonic() - started
    holder.join()
    assert waited > 0.2


def test_the_lock_lives_beside_the_key_file(tmp_path: Path) -> None:
    key = tmp_path / "carol.json"
    key.write_text("{}")
    assert lock_path_of(str(key)) == tmp_path / "carol.json.lock"


class FakeNode:
    """A node whose first `refusals` submissions are refused with `code`."""

    def __init__(self, code: str, refusals: int) -> None:
        self.code, self.refusals, self.nonces = code, refusals, []
        self.next_nonce = 5

    def status(self) -> dict[str, Any]:
        return {"chain_id": "test", "min_fee": 1}

    def account(self, address: bytes) -> dict[str, Any]:
        return {"pending_nonce": self.next_nonce}

    def submit(self, raw: bytes) -> str:
        self.next_nonce += 1
        if self.refusals:
            self.refusals -= 1
            raise ClientError(self.code, "nonce: taken")
        return "ok"


@pytest.mark.parametrize("code", ["bad_nonce", "duplicate"])
def test_a_chosen_nonce_is_re_chosen_after_a_refusal(tmp_path: Path, code: str) -> None:
    node = FakeNode(code, refusals=2)
    tx = submit_with_fresh_nonce(node, KeyPair.generate(), "transfer",  # type: ignore[arg-type]
                                 {"to": bytes(32), "amount": 1}, None, None, tmp_path / "k.lock")
    assert tx.nonce == 7


def test_a_given_nonce_is_tried_once_and_retries_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ClientError):
        submit_with_fresh_nonce(FakeNode("bad_nonce", 1), KeyPair.generate(), "transfer",  # type: ignore[arg-type]
                                {"to": bytes(32), "amount": 1}, 5, None, None)
    with pytest.raises(ClientError):
        submit_with_fresh_nonce(FakeNode("bad_nonce", 99), KeyPair.generate(), "transfer",  # type: ignore[arg-type]
                                {"to": bytes(32), "amount": 1}, None, None, None, retries=2)


def test_the_omit_nonce_hint_only_when_nonce_was_given() -> None:
    error = ClientError("bad_nonce", "nonce: 9 is already pending for this sender")
    assert "omit --nonce" in client_error_text(error, nonce_given=True)
    assert "omit --nonce" not in client_error_text(error) and "--nonce" not in client_error_text(error)
