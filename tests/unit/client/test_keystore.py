"""The local key store (node/keystore.py): both file formats, permissions and failures."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nacl.pwhash
import pytest

from client.keystore import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    KeyInfo,
    Keystore,
    KeystoreError,
    default_keystore_dir,
    load_key_file,
    read_key_info,
    write_plain_key,
)
from marketplace_tx.primitives.crypto import KeyPair

KNOWN_SEED = bytes(range(32))
KNOWN_SEED_HEX = KNOWN_SEED.hex()
KNOWN_ADDRESS_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
PASSPHRASE = "correct horse battery staple"
FAST_LIMITS = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}
"""Argon2id limits that keep the tests fast; the defaults are tested once."""


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    """A key store in a fresh, not yet existing directory."""
    return Keystore(tmp_path / "keys")


def mode_of(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def read_json(path: Path) -> dict:
    """The JSON document in `path`."""
    return json.loads(path.read_text())


def write_json(path: Path, document: object) -> None:
    """Write `document` as JSON to `path`."""
    path.write_text(json.dumps(document))


def plain_document(keypair: KeyPair) -> dict:
    """A §11 plain dev key document."""
    return {"address": keypair.address.hex(), "secret_seed": keypair.seed.hex()}


# Directory and default location


def test_directory_is_created_with_mode_0700(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "keys"
    Keystore(directory)
    assert directory.is_dir()
    assert mode_of(directory) == 0o700


def test_default_directory_comes_from_environment_or_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "custom"))
    assert default_keystore_dir() == tmp_path / "custom"
    assert Keystore().directory == tmp_path / "custom"
    monkeypatch.delenv("MARKETCHAIN_KEYSTORE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_keystore_dir() == tmp_path / "home" / ".marketchain" / "keys"


def test_directory_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "keys"
    blocker.write_text("not a directory")
    with pytest.raises(KeystoreError, match="cannot create keystore directory"):
        Keystore(blocker)


# Plain dev keys


def test_plain_key_create_list_show_load(keystore: Keystore) -> None:
    keypair = keystore.create("alice", None)
    path = keystore.directory / "alice.json"
    assert read_json(path) == plain_document(keypair)
    assert mode_of(path) == 0o600
    assert keystore.names() == ["alice"]
    assert keystore.info("alice") == KeyInfo(
        name="alice", address=keypair.address, encrypted=False, path=path
    )
    assert keystore.load("alice", None) == keypair
    assert keystore.load("alice", "ignored for plain keys") == keypair


def test_known_seed_gives_known_address(keystore: Keystore) -> None:
    keypair = keystore.import_seed("known", KNOWN_SEED_HEX, None)
    assert keypair.seed == KNOWN_SEED
    assert keypair.address.hex() == KNOWN_ADDRESS_HEX
    assert read_json(keystore.directory / "known.json") == {
        "address": KNOWN_ADDRESS_HEX,
        "secret_seed": KNOWN_SEED_HEX,
    }
    encrypted = keystore.import_seed("known-locked", KNOWN_SEED_HEX, PASSPHRASE, **FAST_LIMITS)
    assert encrypted.address.hex() == KNOWN_ADDRESS_HEX
    assert keystore.load("known-locked", PASSPHRASE).address.hex() == KNOWN_ADDRESS_HEX


def test_import_seed_rejects_bad_hex(keystore: Keystore) -> None:
    for seed_hex in ("", "00" * 31, "00" * 33, "zz" * 32, KNOWN_SEED_HEX + "0"):
        with pytest.raises(KeystoreError, match="64 hex characters"):
            keystore.import_seed("bad", seed_hex, None)
    assert keystore.names() == []


def test_create_rejects_seed_of_wrong_length(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError, match="32 bytes"):
        keystore.create("short", None, b"\x01" * 31)


def test_files_are_0600_even_with_a_permissive_umask(keystore: Keystore, tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        keystore.create("open", None)
        write_plain_key(tmp_path / "written.json", KeyPair.generate())
    finally:
        os.umask(previous)
    assert mode_of(keystore.directory / "open.json") == 0o600
    assert mode_of(tmp_path / "written.json") == 0o600


# Encrypted keys


def test_encrypted_key_create_list_show_load(keystore: Keystore) -> None:
    keypair = keystore.create("bob", PASSPHRASE, KNOWN_SEED, **FAST_LIMITS)
    path = keystore.directory / "bob.json"
    document = read_json(path)
    assert set(document) == {"version", "address", "crypto"}
    assert document["version"] == 1
    assert document["address"] == KNOWN_ADDRESS_HEX
    crypto = document["crypto"]
    assert crypto["kdf"] == "argon2id"
    assert crypto["cipher"] == "xsalsa20poly1305"
    assert crypto["opslimit"] == FAST_LIMITS["opslimit"]
    assert crypto["memlimit"] == FAST_LIMITS["memlimit"]
    assert len(bytes.fromhex(crypto["salt"])) == nacl.pwhash.argon2id.SALTBYTES
    assert len(bytes.fromhex(crypto["nonce"])) == 24
    assert len(bytes.fromhex(crypto["ciphertext"])) == 48
    assert mode_of(path) == 0o600
    assert keystore.names() == ["bob"]
    assert keystore.info("bob") == KeyInfo(
        name="bob", address=keypair.address, encrypted=True, path=path
    )
    assert keystore.load("bob", PASSPHRASE) == keypair


def test_default_limits_are_moderate_and_stored(keystore: Keystore) -> None:
    """Issue 13: keys that guard money get libsodium's moderate limits (one real derivation)."""
    keystore.create("default", PASSPHRASE)
    crypto = read_json(keystore.directory / "default.json")["crypto"]
    assert crypto["opslimit"] == DEFAULT_OPSLIMIT == nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    assert crypto["memlimit"] == DEFAULT_MEMLIMIT == nacl.pwhash.argon2id.MEMLIMIT_MODERATE


def test_a_file_with_the_older_interactive_limits_still_opens(keystore: Keystore) -> None:
    """The limits are read from each file, so files written before issue 13 still open."""
    old = {"opslimit": nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, "memlimit": FAST_LIMITS["memlimit"]}
    keypair = keystore.create("old", PASSPHRASE, KNOWN_SEED, **old)
    assert read_json(keystore.directory / "old.json")["crypto"]["opslimit"] == old["opslimit"]
    assert keystore.load("old", PASSPHRASE) == keypair


def test_encrypted_file_does_not_contain_the_seed(keystore: Keystore) -> None:
    keystore.create("secret", PASSPHRASE, KNOWN_SEED, **FAST_LIMITS)
    text = (keystore.directory / "secret.json").read_text().lower()
    assert KNOWN_SEED_HEX not in text
    assert "secret_seed" not in text


def test_salt_and_nonce_are_fresh_each_time(keystore: Keystore) -> None:
    keystore.create("one", PASSPHRASE, KNOWN_SEED, **FAST_LIMITS)
    keystore.create("two", PASSPHRASE, KNOWN_SEED, **FAST_LIMITS)
    first = read_json(keystore.directory / "one.json")["crypto"]
    second = read_json(keystore.directory / "two.json")["crypto"]
    assert first["salt"] != second["salt"]
    assert first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]


def test_wrong_passphrase_fails_with_message(keystore: Keystore) -> None:
    keystore.create("carol", PASSPHRASE, **FAST_LIMITS)
    with pytest.raises(KeystoreError) as raised:
        keystore.load("carol", "not the passphrase")
    assert raised.value.message == "wrong passphrase for key carol"
    assert str(raised.value) == "wrong passphrase for key carol"


def test_encrypted_key_without_passphrase_fails(keystore: Keystore) -> None:
    keystore.create("dave", PASSPHRASE, **FAST_LIMITS)
    with pytest.raises(KeystoreError, match="passphrase is needed"):
        keystore.load("dave", None)
    assert keystore.info("dave").encrypted is True


def test_empty_passphrase_is_refused(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError, match="non-empty"):
        keystore.create("empty", "", **FAST_LIMITS)
    assert keystore.names() == []


def test_unusable_limits_are_refused(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError, match="opslimit"):
        keystore.create("weak", PASSPHRASE, opslimit=0, memlimit=FAST_LIMITS["memlimit"])
    with pytest.raises(KeystoreError, match="memlimit"):
        keystore.create("weak", PASSPHRASE, opslimit=FAST_LIMITS["opslimit"], memlimit=1)
    assert keystore.names() == []


def test_tampered_ciphertext_fails_cleanly(keystore: Keystore) -> None:
    keystore.create("eve", PASSPHRASE, **FAST_LIMITS)
    path = keystore.directory / "eve.json"
    document = read_json(path)
    ciphertext = bytearray.fromhex(document["crypto"]["ciphertext"])
    ciphertext[0] ^= 0x01
    document["crypto"]["ciphertext"] = ciphertext.hex()
    write_json(path, document)
    with pytest.raises(KeystoreError, match="wrong passphrase for key eve"):
        keystore.load("eve", PASSPHRASE)


def test_tampered_salt_or_limits_fail_cleanly(keystore: Keystore) -> None:
    keystore.create("frank", PASSPHRASE, **FAST_LIMITS)
    path = keystore.directory / "frank.json"
    original = read_json(path)
    for field_name, value in (("salt", "00" * 16), ("opslimit", FAST_LIMITS["opslimit"] + 1)):
        document = json.loads(json.dumps(original))
        document["crypto"][field_name] = value
        write_json(path, document)
        with pytest.raises(KeystoreError, match="wrong passphrase for key frank"):
            keystore.load("frank", PASSPHRASE)


def test_encrypted_address_mismatch_is_detected(keystore: Keystore) -> None:
    keystore.create("grace", PASSPHRASE, KNOWN_SEED, **FAST_LIMITS)
    path = keystore.directory / "grace.json"
    document = read_json(path)
    other_address = KeyPair.from_seed(b"\x07" * 32).address
    document["address"] = other_address.hex()
    write_json(path, document)
    assert keystore.info("grace").address == other_address  # info trusts the file...
    with pytest.raises(KeystoreError, match="does not match") as raised:
        keystore.load("grace", PASSPHRASE)  # ...load checks it
    assert KNOWN_SEED_HEX not in raised.value.message


def test_plain_address_mismatch_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.json"
    document = plain_document(KeyPair.from_seed(KNOWN_SEED))
    document["address"] = KeyPair.from_seed(b"\x07" * 32).address.hex()
    write_json(path, document)
    with pytest.raises(KeystoreError, match="does not match") as raised:
        load_key_file(path, None)
    assert str(path) in raised.value.message
    assert KNOWN_SEED_HEX not in raised.value.message


# Names


def test_duplicate_names_are_refused(keystore: Keystore) -> None:
    first = keystore.create("dup", None)
    with pytest.raises(KeystoreError, match="key dup already exists"):
        keystore.create("dup", None)
    with pytest.raises(KeystoreError, match="key dup already exists"):
        keystore.create("dup", PASSPHRASE, **FAST_LIMITS)
    with pytest.raises(KeystoreError, match="key dup already exists"):
        keystore.import_seed("dup", KNOWN_SEED_HEX, None)
    assert keystore.load("dup", None) == first


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "a" * 65, "has space", "slash/name", "../escape", "back\\slash", "ünï", "a:b"],
)
def test_invalid_names_are_refused(keystore: Keystore, name: str) -> None:
    with pytest.raises(KeystoreError, match="invalid key name"):
        keystore.create(name, None)
    with pytest.raises(KeystoreError, match="invalid key name"):
        keystore.load(name, None)
    assert list(keystore.directory.iterdir()) == []


def test_valid_names_are_accepted(keystore: Keystore) -> None:
    names = ["a", "A" * 64, "node.validator", "my_key-2", "0"]
    for name in names:
        keystore.create(name, None)
    assert keystore.names() == sorted(names)


def test_names_skip_other_files(keystore: Keystore) -> None:
    keystore.create("real", None)
    (keystore.directory / "notes.txt").write_text("hello")
    (keystore.directory / ".real.json.1234.tmp").write_text("{}")
    (keystore.directory / ".hidden.json").write_text("{}")
    (keystore.directory / "folder.json").mkdir()
    assert keystore.names() == ["real"]


def test_missing_key_and_delete(keystore: Keystore) -> None:
    keystore.create("temporary", None)
    keystore.delete("temporary")
    assert keystore.names() == []
    for action in (keystore.info, keystore.delete, lambda name: keystore.load(name, None)):
        with pytest.raises(KeystoreError, match="no key named temporary"):
            action("temporary")


# Module-level file functions


def test_load_key_file_reads_a_plain_dev_file(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    path = accounts / "faucet.json"
    path.write_text(json.dumps({"address": KNOWN_ADDRESS_HEX, "secret_seed": KNOWN_SEED_HEX}))
    keypair = load_key_file(path, None)
    assert keypair == KeyPair.from_seed(KNOWN_SEED)
    assert load_key_file(str(path), None) == keypair
    assert read_key_info(path) == KeyInfo(
        name="faucet", address=keypair.address, encrypted=False, path=path
    )


def test_load_key_file_reads_an_encrypted_file(keystore: Keystore) -> None:
    keypair = keystore.create("locked", PASSPHRASE, **FAST_LIMITS)
    path = keystore.directory / "locked.json"
    assert load_key_file(path, PASSPHRASE) == keypair
    with pytest.raises(KeystoreError, match=f"wrong passphrase for key file {path}"):
        load_key_file(path, "nope")


def test_write_plain_key_writes_the_dev_format(tmp_path: Path) -> None:
    keypair = KeyPair.from_seed(KNOWN_SEED)
    path = tmp_path / "alice.json"
    write_plain_key(path, keypair)
    assert read_json(path) == {"address": KNOWN_ADDRESS_HEX, "secret_seed": KNOWN_SEED_HEX}
    assert mode_of(path) == 0o600
    assert load_key_file(path, None) == keypair
    replacement = KeyPair.from_seed(b"\x09" * 32)
    write_plain_key(path, replacement)
    assert load_key_file(path, None) == replacement
    with pytest.raises(KeystoreError, match="already exists"):
        write_plain_key(path, keypair, overwrite=False)
    assert load_key_file(path, None) == replacement
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["alice.json"]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="does not exist"):
        load_key_file(tmp_path / "absent.json", None)
    with pytest.raises(KeystoreError, match="does not exist"):
        read_key_info(tmp_path / "absent.json")


def _valid_encrypted_document() -> dict:
    return {
        "version": 1,
        "address": KNOWN_ADDRESS_HEX,
        "crypto": {
            "kdf": "argon2id",
            "opslimit": FAST_LIMITS["opslimit"],
            "memlimit": FAST_LIMITS["memlimit"],
            "salt": "00" * 16,
            "cipher": "xsalsa20poly1305",
            "nonce": "00" * 24,
            "ciphertext": "00" * 48,
        },
    }


def _with(changes: dict, crypto_changes: dict | None = None, remove: tuple = ()) -> dict:
    document = _valid_encrypted_document()
    document["crypto"].update(crypto_changes or {})
    for field_name in remove:
        document["crypto"].pop(field_name)
    document.update(changes)
    return document


MALFORMED_CONTENTS = {
    "not json": ("{not json", "not valid JSON"),
    "not utf-8": (b"\xff\xfe{}", "not valid"),
    "empty": ("", "not valid JSON"),
    "list": ("[]", "JSON object"),
    "empty object": ("{}", "missing field"),
    "seed only": ({"secret_seed": KNOWN_SEED_HEX}, "missing field 'address'"),
    "extra plain field": (
        {"address": KNOWN_ADDRESS_HEX, "secret_seed": KNOWN_SEED_HEX, "name": "x"},
        "unexpected field 'name'",
    ),
    "uppercase seed": (
        {"address": KNOWN_ADDRESS_HEX, "secret_seed": KNOWN_SEED_HEX.upper()},
        "'secret_seed' must be 64 lowercase hex",
    ),
    "short seed": (
        {"address": KNOWN_ADDRESS_HEX, "secret_seed": KNOWN_SEED_HEX[:-2]},
        "'secret_seed' must be 64 lowercase hex",
    ),
    "seed not a string": (
        {"address": KNOWN_ADDRESS_HEX, "secret_seed": 12},
        "'secret_seed' must be 64",
    ),
    "bad address hex": (
        {"address": "xy" * 32, "secret_seed": KNOWN_SEED_HEX},
        "'address' must be 64 lowercase hex",
    ),
    "long address": (
        {"address": KNOWN_ADDRESS_HEX + "00", "secret_seed": KNOWN_SEED_HEX},
        "'address' must be 64",
    ),
    "wrong version": (_with({"version": 2}), "unsupported version"),
    "boolean version": (_with({"version": True}), "unsupported version"),
    "crypto not an object": (_with({"crypto": "x"}), "'crypto' must be a JSON object"),
    "missing nonce": (_with({}, remove=("nonce",)), "missing field 'crypto.nonce'"),
    "extra crypto field": (_with({}, {"mac": "00"}), "unexpected field 'crypto.mac'"),
    "other kdf": (_with({}, {"kdf": "scrypt"}), "'crypto.kdf' must be 'argon2id'"),
    "other cipher": (_with({}, {"cipher": "aes"}), "'crypto.cipher' must be"),
    "string opslimit": (_with({}, {"opslimit": "2"}), "opslimit must be an integer"),
    "zero opslimit": (_with({}, {"opslimit": 0}), "opslimit must be an integer"),
    "huge memlimit": (_with({}, {"memlimit": 2**60}), "memlimit must be an integer"),
    "short salt": (_with({}, {"salt": "00" * 15}), "'crypto.salt' must be 32 lowercase hex"),
    "bad nonce": (_with({}, {"nonce": "g" * 48}), "'crypto.nonce' must be 48"),
    "short ciphertext": (_with({}, {"ciphertext": "00" * 32}), "'crypto.ciphertext' must be 96"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CONTENTS))
def test_malformed_files_give_keystore_error(keystore: Keystore, case: str) -> None:
    content, expected = MALFORMED_CONTENTS[case]
    path = keystore.directory / "broken.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        write_json(path, content)
    for read in (
        lambda: load_key_file(path, PASSPHRASE),
        lambda: read_key_info(path),
        lambda: keystore.load("broken", PASSPHRASE),
        lambda: keystore.info("broken"),
    ):
        with pytest.raises(KeystoreError, match=expected) as raised:
            read()
        assert str(path) in raised.value.message
        assert KNOWN_SEED_HEX not in raised.value.message
        assert KNOWN_SEED_HEX.upper() not in raised.value.message
