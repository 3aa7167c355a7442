"""The CLI at a real terminal (issue 12, point 6), run as a subprocess on a pseudo-terminal:
a new passphrase shorter than 8 characters is asked again, a wrong passphrase gets three tries;
and `marketchain init --home ./node`, as the README once suggested, refuses a package folder."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import nacl.pwhash
import pytest

from client.keystore import Keystore
from node.home import init_home
from tests.fast_keys import FAST_LIMITS, fast_key_derivation
from tests.paths import REPO_ROOT

DEADLINE_SECONDS = 60.0


class Terminal:
    """`python -m cli ARGUMENTS` on a pseudo-terminal: expect text, type lines."""

    def __init__(self, *arguments: str, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its terminal is the pty
            os.chdir(REPO_ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "cli", *arguments], env)
        self.seen = ""

    def expect(self, text: str) -> str:
        """Read until `text` has appeared (after what was already matched); return what was read."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while text not in self.seen:
            assert time.monotonic() < deadline, f"{text!r} not in {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"the command ended; {text!r} not in {self.seen!r}"
                self.seen += chunk.decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before + text

    def type(self, line: str) -> None:
        """Type `line` and Enter."""
        os.write(self.fd, (line + "\n").encode())

    def exit_code(self) -> int:
        """Wait for the command; its exit code (the rest of its output is in `self.seen`)."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk.decode("utf-8", "replace")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def environment(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "MARKETCHAIN_PASSPHRASE"}
    return {**env, "MARKETCHAIN_KEYSTORE": str(tmp_path / "keys"), "TERM": "dumb"}


def test_a_short_new_passphrase_is_asked_again_and_a_wrong_one_gets_three_tries(tmp_path: Path) -> None:
    env = environment(tmp_path)
    new = Terminal("keys", "new", "alice", env=env)
    new.expect("New passphrase:")
    new.type("x")
    new.expect("Repeat for confirmation:")
    new.type("x")
    new.expect("at least 8 characters; try again")
    new.expect("New passphrase:")
    new.type("correct horse")
    new.expect("Repeat for confirmation:")
    new.type("correct horse")
    assert new.exit_code() == 0 and "encrypted" in new.seen
    crypto = json.loads((tmp_path / "keys" / "alice.json").read_text())["crypto"]  # issue 13: the CLI's
    assert (crypto["opslimit"], crypto["memlimit"]) == (  # default is Argon2id "moderate"
        nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
    Keystore(tmp_path / "keys").create("bob", "correct horse", **FAST_LIMITS)  # 7 tries below: fast
    signing = Terminal("tx", "transfer", "--key", "bob", "--to", "ab" * 32, "--amount", "1MKT",
                       "--node", "http://127.0.0.1:9", env=env)
    for attempt in ("wrong one", "wrong two"):
        signing.expect("Passphrase for key bob:")
        signing.type(attempt)
        signing.expect("try again")
    signing.expect("Passphrase for key bob:")
    signing.type("correct horse")
    assert signing.exit_code() == 1 and "unreachable" in signing.seen  # the key opened; there is no node
    failing = Terminal("tx", "transfer", "--key", "bob", "--to", "ab" * 32, "--amount", "1MKT",
                       "--node", "http://127.0.0.1:9", env=env)
    for attempt in ("one", "two", "three"):
        failing.expect("Passphrase for key bob:")
        failing.type(attempt)
    assert failing.exit_code() == 1 and "wrong passphrase for key bob" in failing.seen


def test_init_into_a_package_folder_as_the_readme_once_said_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "__init__.py").write_text('"""A package."""\n')
    completed = subprocess.run([sys.executable, "-m", "cli", "init", "--home", "./node"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=DEADLINE_SECONDS, stdin=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert completed.returncode == 1 and "node is not empty (__init__.py)" in completed.stderr
    assert sorted(path.name for path in (tmp_path / "node").iterdir()) == ["__init__.py"]


def test_node_start_asks_an_encrypted_homes_passphrase_at_a_terminal_three_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: `node start` asks an encrypted home's passphrase at a terminal, 3 tries, then stops cleanly."""
    fast_key_derivation(monkeypatch)  # the home is written here, in the test's process
    init_home(tmp_path / "home", passphrase="correct horse")
    env = {name: value for name, value in environment(tmp_path).items() if "PASSPHRASE" not in name}
    starting = Terminal("node", "start", "--home", str(tmp_path / "home"), env=env)
    for attempt in ("wrong one", "wrong two"):
        starting.expect("Passphrase of the home's keys:")
        starting.type(attempt)
        starting.expect("try again")
    starting.expect("Passphrase of the home's keys:")
    starting.type("wrong three")
    assert starting.exit_code() == 1
    assert "Error: wrong passphrase for key file" in starting.seen and "Traceback" not in starting.seen
