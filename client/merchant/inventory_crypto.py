"""The key that encrypts the merchant agent's codes at rest: the keystore's passphrase scheme
(client/keystore.py): Argon2id stretches the passphrase into a 32-byte key for
`nacl.secret.SecretBox` (XSalsa20-Poly1305). The Argon2id limits and salt are kept in
`key.json` beside the codes, with a sealed known text that tells a wrong passphrase at once.

New inventories use the keystore's default limits (libsodium "moderate"); tests may pass
lower limits to `create_inventory_key` (tests/fast_keys.py), which are stored in the file.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret

from client import keystore
from client.merchant.durable_files import ensure_directory, write_json_atomically

KEY_FILE = "key.json"
"""The inventory key's file in the inventory directory."""

CHECK_TEXT = b"marketchain merchant inventory v1"
"""What `key.json` seals, to tell a wrong passphrase from damaged codes."""

INVENTORY_PASSPHRASE_VARIABLE = "MARKETCHAIN_INVENTORY_PASSPHRASE"
"""Where the agent and `merchant codes add` read the inventory's passphrase first
(then `MARKETCHAIN_PASSPHRASE`, then a prompt)."""


class InventoryError(Exception):
    """The inventory cannot be opened or changed: wrong passphrase, damaged file, bad code."""


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    try:
        return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt,
                                        opslimit=opslimit, memlimit=memlimit)
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError, MemoryError, UnicodeEncodeError) as error:
        raise InventoryError(f"Argon2id failed for the inventory key: {error}") from None


def create_inventory_key(directory: Path, passphrase: str, opslimit: int | None = None,
                         memlimit: int | None = None) -> bytes:
    """Make `directory/key.json` for a new inventory and return the derived key; an existing one is
    opened instead (so two first imports agree). Passphrases shorter than the keystore's minimum are refused."""
    if (directory / KEY_FILE).exists():
        return open_inventory_key(directory, passphrase)
    if len(passphrase) < keystore.MINIMUM_PASSPHRASE_LENGTH:
        raise InventoryError(f"an inventory passphrase needs at least {keystore.MINIMUM_PASSPHRASE_LENGTH} characters")
    opslimit = keystore.DEFAULT_OPSLIMIT if opslimit is None else opslimit
    memlimit = keystore.DEFAULT_MEMLIMIT if memlimit is None else memlimit
    salt = secrets.token_bytes(nacl.pwhash.argon2id.SALTBYTES)
    key = _derive(passphrase, salt, opslimit, memlimit)
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    check = nacl.secret.SecretBox(key).encrypt(CHECK_TEXT, nonce).ciphertext
    document = {"version": 1, "kdf": "argon2id", "cipher": "xsalsa20poly1305", "opslimit": opslimit,
                "memlimit": memlimit, "salt": salt.hex(), "nonce": nonce.hex(), "check": check.hex()}
    ensure_directory(directory)
    try:
        write_json_atomically(directory / KEY_FILE, document, overwrite=False)
    except FileExistsError:
        return open_inventory_key(directory, passphrase)
    return key


def open_inventory_key(directory: Path, passphrase: str) -> bytes:
    """The key of the inventory in `directory`; InventoryError on a wrong passphrase or a bad file."""
    path = directory / KEY_FILE
    try:
        document = json.loads(path.read_bytes())
        salt, nonce, check = (bytes.fromhex(document[name]) for name in ("salt", "nonce", "check"))
        opslimit, memlimit = int(document["opslimit"]), int(document["memlimit"])
    except FileNotFoundError:
        raise InventoryError(f"no inventory in {directory}: import codes first (marketchain merchant codes add)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InventoryError(f"inventory key file {path} is damaged: {error}") from None
    key = _derive(passphrase, salt, opslimit, memlimit)
    try:
        if nacl.secret.SecretBox(key).decrypt(check, nonce) != CHECK_TEXT:
            raise nacl.exceptions.CryptoError
    except nacl.exceptions.CryptoError:
        raise InventoryError(f"wrong passphrase for the inventory in {directory}") from None
    return key


def seal_codes(key: bytes, codes: list[str]) -> dict[str, Any]:
    """`{"nonce", "ciphertext"}` (hex) of `codes`, newline-joined, under `key`."""
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = nacl.secret.SecretBox(key).encrypt("\n".join(codes).encode("utf-8"), nonce).ciphertext
    return {"nonce": nonce.hex(), "ciphertext": ciphertext.hex()}


def open_codes(key: bytes, document: dict[str, Any], where: str) -> list[str]:
    """The codes `seal_codes` sealed; InventoryError if `document` (read from `where`) was altered."""
    try:
        plain = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(document["ciphertext"]), bytes.fromhex(document["nonce"]))
    except (nacl.exceptions.CryptoError, ValueError, KeyError, TypeError):
        raise InventoryError(f"codes file {where} is damaged or not of this inventory") from None
    return plain.decode("utf-8").split("\n")
