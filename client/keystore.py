"""The local key store: one JSON file per named Ed25519 key (PROTOCOL §11).

Used by `marketchain keys new/list/show`, by `--key` on signing commands and by
`marketchain init` for node and validator keys. A key file has one of two formats:

- a plain dev key, exactly `{"address": hex, "secret_seed": hex}`: the format
  testnets write to `DIR/accounts/NAME.json`;
- an encrypted key, `{"version": 1, "address": hex, "crypto": {...}}`: the passphrase
  is stretched with Argon2id into a 32-byte key that seals the 32-byte seed in a
  `nacl.secret.SecretBox` (XSalsa20-Poly1305). The Argon2id limits are stored in the
  file, so stronger defaults can come later without breaking old files: new files use
  libsodium's "moderate" limits (issue 13: keys that guard money), files written with
  the older "interactive" ones still open.

All bytes are lowercase hex (R5). Files are mode 0600 and written atomically; the
directory is mode 0700. No function here logs, prints or puts a secret in an error.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret

from client import durable_files
from client.durable_files import fsync_directory, write_atomically
from marketplace_tx.primitives.crypto import ADDRESS_BYTES, SEED_BYTES, KeyPair

KEYSTORE_ENVIRONMENT_VARIABLE = "MARKETCHAIN_KEYSTORE"
"""Environment variable that overrides the default keystore directory."""

FILE_VERSION = 1
"""The `version` of the encrypted key file format."""

KDF_NAME = "argon2id"
"""The only key derivation function of `FILE_VERSION` 1."""

CIPHER_NAME = "xsalsa20poly1305"
"""The only cipher of `FILE_VERSION` 1 (`nacl.secret.SecretBox`)."""

DEFAULT_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
"""Argon2id operations limit of a new encrypted key when not told otherwise: libsodium's
"moderate" (3), about 0.5-1 s per derivation. Read at call time, so that a test may lower
it deliberately (tests/fast_keys.py); an explicit `opslimit` argument always wins."""

DEFAULT_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
"""Argon2id memory limit in bytes of a new encrypted key when not told otherwise:
libsodium's "moderate" (256 MiB). Read at call time, like `DEFAULT_OPSLIMIT`."""

DIRECTORY_MODE = 0o700
"""Permissions of a keystore directory this module creates."""

FILE_MODE = durable_files.FILE_MODE
"""Permissions of every key file this module writes (0600)."""

PASSPHRASE_ENVIRONMENT_VARIABLE = "MARKETCHAIN_PASSPHRASE"
"""Where the CLI (`keys new`, signing commands) and a node (`init --encrypt`, `node start`)
read a passphrase when they must not prompt."""

MINIMUM_PASSPHRASE_LENGTH = 8
"""Characters a new passphrase needs at least (a key's or a node home's)."""

PASSPHRASE_TRIES = 3
"""Tries a person at a terminal gets to type a passphrase."""

KEY_FILE_SUFFIX = ".json"
"""Every key `NAME` lives in the file `NAME.json`."""

_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES
_NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
_CIPHERTEXT_BYTES = SEED_BYTES + nacl.secret.SecretBox.MACBYTES
_PLAIN_FIELDS = frozenset({"address", "secret_seed"})
_ENCRYPTED_FIELDS = frozenset({"version", "address", "crypto"})
_CRYPTO_FIELDS = frozenset({"kdf", "opslimit", "memlimit", "salt", "cipher", "nonce", "ciphertext"})


class KeystoreError(Exception):
    """A key store operation failed: bad name, missing key, wrong passphrase, bad file."""

    message: str
    """What went wrong, naming the key or file; never contains secret material."""

    def __init__(self, message: str) -> None:
        """An error saying `message`."""
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class KeyInfo:
    """What can be learned about a key file without its passphrase."""

    name: str
    """The key's name: the file name without `.json`."""
    address: bytes
    """The 32-byte address (Ed25519 public key) the file claims."""
    encrypted: bool
    """True for a passphrase-encrypted file, False for a plain dev key."""
    path: Path
    """Where the key file is."""


def default_keystore_dir() -> Path:
    """`$MARKETCHAIN_KEYSTORE` if set and non-empty, else `~/.marketchain/keys`."""
    configured = os.environ.get(KEYSTORE_ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".marketchain" / "keys"


def check_key_name(name: str) -> None:
    """Raise KeystoreError unless `name` is 1..64 of [A-Za-z0-9._-] not starting with '.'."""
    if not _is_valid_name(name):
        raise KeystoreError(
            f"invalid key name {name!r}: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-',"
            " not starting with '.'"
        )


def _is_valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME_PATTERN.fullmatch(name)) and name[0] != "."


class Keystore:
    """A directory of named key files, `<directory>/<NAME>.json`."""

    directory: Path
    """The directory that holds the key files."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        """Open the key store in `directory` (default: `default_keystore_dir()`), creating it
        with mode 0700 if missing."""
        self.directory = Path(directory) if directory is not None else default_keystore_dir()
        if not self.directory.is_dir():
            try:
                self.directory.mkdir(parents=True, mode=DIRECTORY_MODE)
                os.chmod(self.directory, DIRECTORY_MODE)
            except OSError as error:
                raise KeystoreError(
                    f"cannot create keystore directory {self.directory}: {error.strerror or error}"
                ) from None

    def path_of(self, name: str) -> Path:
        """The file of key `name` (which need not exist); invalid names raise KeystoreError."""
        check_key_name(name)
        return self.directory / (name + KEY_FILE_SUFFIX)

    def create(
        self,
        name: str,
        passphrase: str | None,
        seed: bytes | None = None,
        *,
        opslimit: int | None = None,
        memlimit: int | None = None,
    ) -> KeyPair:
        """Store a new key `name` from `seed` (default: a fresh random one) and return it.

        A `None` passphrase writes a plain dev key; otherwise the seed is encrypted with
        Argon2id(`opslimit`, `memlimit`; default moderate) and XSalsa20-Poly1305. An existing
        name is refused.
        """
        path = self.path_of(name)
        if path.exists():
            raise KeystoreError(f"key {name} already exists")
        if seed is None:
            keypair = KeyPair.generate()
        elif isinstance(seed, bytes | bytearray) and len(seed) == SEED_BYTES:
            keypair = KeyPair.from_seed(bytes(seed))
        else:
            raise KeystoreError(f"a seed is {SEED_BYTES} bytes")
        if passphrase is None:
            document = _plain_document(keypair)
        else:
            document = encrypt_key(keypair, passphrase, opslimit=opslimit, memlimit=memlimit)
        try:
            _write_json_atomically(path, document, overwrite=False)
        except FileExistsError:
            raise KeystoreError(f"key {name} already exists") from None
        return keypair

    def import_seed(
        self,
        name: str,
        seed_hex: str,
        passphrase: str | None,
        *,
        opslimit: int | None = None,
        memlimit: int | None = None,
    ) -> KeyPair:
        """Store key `name` from a seed given as 64 hex characters; see `create`."""
        text = seed_hex.strip().lower() if isinstance(seed_hex, str) else ""
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise KeystoreError(f"a seed is {SEED_BYTES * 2} hex characters")
        return self.create(
            name, passphrase, bytes.fromhex(text), opslimit=opslimit, memlimit=memlimit
        )

    def names(self) -> list[str]:
        """The names of the stored keys, sorted."""
        try:
            entries = list(self.directory.iterdir())
        except OSError as error:
            raise KeystoreError(
                f"cannot list keystore directory {self.directory}: {error.strerror or error}"
            ) from None
        names = []
        for entry in entries:
            if entry.suffix != KEY_FILE_SUFFIX or not entry.is_file():
                continue
            name = entry.name[: -len(KEY_FILE_SUFFIX)]
            if _is_valid_name(name):
                names.append(name)
        return sorted(names)

    def info(self, name: str) -> KeyInfo:
        """Name, address and format of key `name`, without its passphrase."""
        return read_key_info(self._existing_path(name))

    def load(self, name: str, passphrase: str | None) -> KeyPair:
        """The key pair of key `name`; an encrypted key needs its passphrase."""
        path = self._existing_path(name)
        return _decode_key(_read_document(path), passphrase, path, f"key {name}")

    def delete(self, name: str) -> None:
        """Remove key `name` for good."""
        path = self._existing_path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeystoreError(f"no key named {name}") from None
        except OSError as error:
            raise KeystoreError(
                f"cannot delete key file {path}: {error.strerror or error}"
            ) from None
        fsync_directory(path.parent)

    def export(self, name: str, target: str | os.PathLike[str], passphrase: str | None = None) -> None:
        """Write key `name` to the new file `target`, always encrypted: an encrypted key as it is
        stored, a plain dev key encrypted under `passphrase` (needed then)."""
        path = self._existing_path(name)
        document = _read_document(path)
        if not _check_document(document, path):
            if passphrase is None:
                raise KeystoreError(f"key {name} is a plain dev key: a passphrase is needed to export it encrypted")
            document = encrypt_key(_decode_key(document, None, path, f"key {name}"), passphrase)
        try:
            _write_json_atomically(Path(target), document, overwrite=False)
        except FileExistsError:
            raise KeystoreError(f"{target} already exists") from None

    def import_file(self, name: str, source: str | os.PathLike[str], passphrase: str | None) -> KeyPair:
        """Store the key file `source` (e.g. made by `export`) as key `name`, unchanged, after
        checking that it opens (an encrypted file with `passphrase`)."""
        source = Path(source)
        document = _read_document(source)
        keypair = _decode_key(document, passphrase, source, f"key file {source}")
        try:
            _write_json_atomically(self.path_of(name), document, overwrite=False)
        except FileExistsError:
            raise KeystoreError(f"key {name} already exists") from None
        return keypair

    def _existing_path(self, name: str) -> Path:
        path = self.path_of(name)
        if not path.is_file():
            raise KeystoreError(f"no key named {name} in {self.directory}")
        return path


def encrypt_key(
    keypair: KeyPair,
    passphrase: str,
    *,
    opslimit: int | None = None,
    memlimit: int | None = None,
) -> dict[str, Any]:
    """The encrypted key file document of `keypair` under `passphrase` (random salt, nonce).

    The limits default to `DEFAULT_OPSLIMIT` and `DEFAULT_MEMLIMIT` (moderate) and are stored
    in the document.
    """
    opslimit = DEFAULT_OPSLIMIT if opslimit is None else opslimit
    memlimit = DEFAULT_MEMLIMIT if memlimit is None else memlimit
    if not isinstance(passphrase, str) or passphrase == "":
        raise KeystoreError("the passphrase must be a non-empty string (None for a plain dev key)")
    _check_limits(opslimit, memlimit, "the requested Argon2id limits")
    salt = secrets.token_bytes(_SALT_BYTES)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    box = nacl.secret.SecretBox(_derive_key(passphrase, salt, opslimit, memlimit, "the new key"))
    ciphertext = box.encrypt(keypair.seed, nonce).ciphertext
    return {
        "version": FILE_VERSION,
        "address": keypair.address.hex(),
        "crypto": {
            "kdf": KDF_NAME,
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": salt.hex(),
            "cipher": CIPHER_NAME,
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }


def write_plain_key(
    path: str | os.PathLike[str], keypair: KeyPair, *, overwrite: bool = True
) -> None:
    """Write `keypair` as a plain dev key file (§11 format), mode 0600, atomically.

    With `overwrite=False` an existing file raises KeystoreError instead of being replaced.
    """
    path = Path(path)
    try:
        _write_json_atomically(path, _plain_document(keypair), overwrite=overwrite)
    except FileExistsError:
        raise KeystoreError(f"key file {path} already exists") from None


def write_encrypted_key(
    path: str | os.PathLike[str],
    keypair: KeyPair,
    passphrase: str,
    *,
    opslimit: int | None = None,
    memlimit: int | None = None,
    overwrite: bool = True,
) -> None:
    """Write `keypair` encrypted under `passphrase` (see `encrypt_key`; moderate limits by
    default), mode 0600, atomically; used by `marketchain init --encrypt` for node homes.

    With `overwrite=False` an existing file raises KeystoreError instead of being replaced.
    """
    path = Path(path)
    document = encrypt_key(keypair, passphrase, opslimit=opslimit, memlimit=memlimit)
    try:
        _write_json_atomically(path, document, overwrite=overwrite)
    except FileExistsError:
        raise KeystoreError(f"key file {path} already exists") from None


def read_key_info(path: str | os.PathLike[str]) -> KeyInfo:
    """Name, address and format of the key file at `path`, without a passphrase."""
    path = Path(path)
    document = _read_document(path)
    encrypted = _check_document(document, path)
    name = path.name[: -len(KEY_FILE_SUFFIX)] if path.suffix == KEY_FILE_SUFFIX else path.name
    address = _hex_field(document, "address", ADDRESS_BYTES, path)
    return KeyInfo(name=name, address=address, encrypted=encrypted, path=path)


def load_key_file(path: str | os.PathLike[str], passphrase: str | None) -> KeyPair:
    """The key pair in the key file at `path`, of either format.

    A plain dev key ignores `passphrase`; an encrypted one needs it.
    """
    path = Path(path)
    return _decode_key(_read_document(path), passphrase, path, f"key file {path}")


def resolve_address(reference: str) -> bytes | None:
    """The address named by `reference`: 64 hex characters, a key file path or a keystore name.

    None when it is none of these (no passphrase is needed: the address is stored in clear).
    """
    try:
        address = bytes.fromhex(reference)
        if len(address) == ADDRESS_BYTES:
            return address
    except ValueError:
        pass
    try:
        if Path(reference).is_file():
            return read_key_info(reference).address
        return Keystore().info(reference).address
    except KeystoreError:
        return None


def _plain_document(keypair: KeyPair) -> dict[str, Any]:
    return {"address": keypair.address.hex(), "secret_seed": keypair.seed.hex()}


def _decode_key(
    document: dict[str, Any], passphrase: str | None, path: Path, label: str
) -> KeyPair:
    """Check `document` (read from `path`) and recover its key; `label` names it in errors."""
    encrypted = _check_document(document, path)
    address = _hex_field(document, "address", ADDRESS_BYTES, path)
    if encrypted:
        if passphrase is None:
            raise KeystoreError(f"{label} is encrypted: a passphrase is needed to load it")
        seed = _decrypt_seed(document["crypto"], passphrase, path, label)
    else:
        seed = _hex_field(document, "secret_seed", SEED_BYTES, path)
    keypair = KeyPair.from_seed(seed)
    if keypair.address != address:
        raise KeystoreError(
            f"key file {path}: field 'address' does not match the address of the stored seed"
        )
    return keypair


def _decrypt_seed(crypto: dict[str, Any], passphrase: str, path: Path, label: str) -> bytes:
    salt = _hex_field(crypto, "salt", _SALT_BYTES, path, "crypto.")
    nonce = _hex_field(crypto, "nonce", _NONCE_BYTES, path, "crypto.")
    ciphertext = _hex_field(crypto, "ciphertext", _CIPHERTEXT_BYTES, path, "crypto.")
    if not isinstance(passphrase, str):
        raise KeystoreError(f"wrong passphrase for {label}")
    key = _derive_key(passphrase, salt, crypto["opslimit"], crypto["memlimit"], label)
    try:
        return nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeystoreError(f"wrong passphrase for {label}") from None


def _derive_key(passphrase: str, salt: bytes, opslimit: int, memlimit: int, label: str) -> bytes:
    try:
        password = passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise KeystoreError(f"the passphrase for {label} is not valid Unicode text") from None
    try:
        return nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, password, salt, opslimit=opslimit, memlimit=memlimit
        )
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError, MemoryError) as error:
        raise KeystoreError(f"Argon2id failed for {label}: {error}") from None


def _check_limits(opslimit: Any, memlimit: Any, where: str) -> None:
    argon2id = nacl.pwhash.argon2id
    for field_name, value, low, high in (
        ("opslimit", opslimit, argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_MAX),
        ("memlimit", memlimit, argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_MAX),
    ):
        if type(value) is not int or not low <= value <= high:
            raise KeystoreError(f"{where}: {field_name} must be an integer in {low}..{high}")


def _read_document(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"key file {path} does not exist") from None
    except OSError as error:
        raise KeystoreError(f"cannot read key file {path}: {error.strerror or error}") from None
    try:
        document = json.loads(data)
    except json.JSONDecodeError as error:
        raise KeystoreError(
            f"key file {path} is not valid JSON: {error.msg} at line {error.lineno}"
        ) from None
    except (ValueError, RecursionError):
        raise KeystoreError(f"key file {path} is not valid UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise KeystoreError(f"key file {path} must hold a JSON object")
    return document


def _check_document(document: dict[str, Any], path: Path) -> bool:
    """Check the shape of a key file document; True if it is the encrypted format."""
    fields = set(document)
    if fields == _PLAIN_FIELDS:
        _hex_field(document, "secret_seed", SEED_BYTES, path)
        _hex_field(document, "address", ADDRESS_BYTES, path)
        return False
    if "crypto" not in fields and "version" not in fields:
        _check_fields(fields, _PLAIN_FIELDS, path, "")
    _check_fields(fields, _ENCRYPTED_FIELDS, path, "")
    version = document["version"]
    if type(version) is not int or version != FILE_VERSION:
        raise KeystoreError(f"key file {path}: unsupported version {version!r} (expected 1)")
    _hex_field(document, "address", ADDRESS_BYTES, path)
    crypto = document["crypto"]
    if not isinstance(crypto, dict):
        raise KeystoreError(f"key file {path}: field 'crypto' must be a JSON object")
    _check_fields(set(crypto), _CRYPTO_FIELDS, path, "crypto.")
    if crypto["kdf"] != KDF_NAME:
        raise KeystoreError(f"key file {path}: field 'crypto.kdf' must be {KDF_NAME!r}")
    if crypto["cipher"] != CIPHER_NAME:
        raise KeystoreError(f"key file {path}: field 'crypto.cipher' must be {CIPHER_NAME!r}")
    _check_limits(crypto["opslimit"], crypto["memlimit"], f"key file {path}: field 'crypto'")
    _hex_field(crypto, "salt", _SALT_BYTES, path, "crypto.")
    _hex_field(crypto, "nonce", _NONCE_BYTES, path, "crypto.")
    _hex_field(crypto, "ciphertext", _CIPHERTEXT_BYTES, path, "crypto.")
    return True


def _check_fields(fields: set[str], expected: frozenset[str], path: Path, prefix: str) -> None:
    missing = sorted(expected - fields)
    if missing:
        names = ", ".join(repr(prefix + field_name) for field_name in missing)
        raise KeystoreError(f"key file {path}: missing field {names}")
    unexpected = sorted(fields - expected)
    if unexpected:
        names = ", ".join(repr(prefix + str(field_name)) for field_name in unexpected)
        raise KeystoreError(f"key file {path}: unexpected field {names}")


def _hex_field(
    mapping: dict[str, Any], field_name: str, length: int, path: Path, prefix: str = ""
) -> bytes:
    """The bytes of a lowercase-hex field of exactly `length` bytes; never echoes the value."""
    value = mapping.get(field_name)
    if not isinstance(value, str) or not re.fullmatch(f"[0-9a-f]{{{length * 2}}}", value):
        raise KeystoreError(
            f"key file {path}: field '{prefix}{field_name}' must be {length * 2} lowercase hex"
            f" characters ({length} bytes)"
        )
    return bytes.fromhex(value)


def _write_json_atomically(path: Path, document: dict[str, Any], *, overwrite: bool) -> None:
    """Write `document` to `path` with mode 0600 via a temporary file, fsync and rename.

    Without `overwrite`, an existing `path` raises FileExistsError and is left untouched.
    """
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    try:
        write_atomically(path, data, overwrite=overwrite)
    except FileExistsError:
        raise
    except OSError as error:
        raise KeystoreError(f"cannot write key file {path}: {error.strerror or error}") from None
