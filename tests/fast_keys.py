"""A deliberate test setting: fast Argon2id for encrypted keys that tests make in bulk.

New encrypted keys use libsodium's "moderate" Argon2id limits (about 0.5-1 s and 256 MiB
per derivation, issue 13). Tests that are about something else (prompts, export/import,
node homes, passphrase sources) lower the defaults for their own process with
`fast_key_derivation(monkeypatch)`, or pass `FAST_LIMITS` to the library; the limits are
stored in each file, so opening such a key is as fast as making it. What the tests check
stays the same: the file format, the passphrase and the error texts. The defaults
themselves are checked at full strength by
tests/unit/client/test_keystore.py::test_default_limits_are_moderate_and_stored and
tests/e2e/test_cli_terminal.py (`keys new` in a real process writes moderate limits).
"""

from __future__ import annotations

import nacl.pwhash
import pytest

from client import keystore

FAST_LIMITS = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}
"""The weakest Argon2id limits libsodium accepts (1 pass, 8 KiB): for tests only."""


def fast_key_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `client.keystore` write new encrypted keys with `FAST_LIMITS` in this process."""
    monkeypatch.setattr(keystore, "DEFAULT_OPSLIMIT", FAST_LIMITS["opslimit"])
    monkeypatch.setattr(keystore, "DEFAULT_MEMLIMIT", FAST_LIMITS["memlimit"])
