"""The devnet's merchant agent (issue 16): Bob's Bikes sells gift cards, delivered unattended.

`marketchain devnet` writes `<home>/merchant/merchant.toml` for the demo shop with the
digital listing, imports demo gift-card codes into the agent's encrypted inventory, and
runs `marketchain merchant run` as a subprocess (its log in `<home>/merchant/agent.log`)
for as long as the devnet runs. The demo's digital order, placed while seeding, is open
when the agent starts; the agent delivers it within a block or two, as it delivers every
order a user places from the CLI (docs/merchant-agent.md).

The inventory's passphrase is a fixed, printed devnet value and its Argon2id limits are
libsodium's "interactive" ones (the devnet starts in seconds): a demo, never a shop's keys.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import nacl.pwhash

from client.devnet import GIFT_CARD_STOCK
from client.merchant.config import load_config
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import INVENTORY_PASSPHRASE_VARIABLE, create_inventory_key
from client.testnet import REPOSITORY_ROOT

DEVNET_INVENTORY_PASSPHRASE = "devnet-gift-cards"
"""The devnet inventory's passphrase (`MARKETCHAIN_INVENTORY_PASSPHRASE` of the agent), printed: a demo."""

MERCHANT_DIRECTORY = "merchant"
"""The agent's folder in the devnet home: merchant.toml, agent.log and the agent's state."""

MERCHANT_ACCOUNT = "bob"
"""The dev account whose shop (Bob's Bikes, no arbiter) the agent runs."""

GIFT_CARD_CODES = GIFT_CARD_STOCK
"""Demo codes imported: one per unit of the gift-card listing's stock."""

PID_FILE = "agent.pid"
"""The running agent's process id, in the merchant folder (for scripts and tests)."""

AGENT_STOP_SECONDS = 15.0
"""How long a stopped devnet waits for the agent to finish its step after SIGTERM before SIGKILL."""


def merchant_directory(home: Path) -> Path:
    """`<home>/merchant`."""
    return home / MERCHANT_DIRECTORY


def config_path(home: Path) -> Path:
    """`<home>/merchant/merchant.toml`."""
    return merchant_directory(home) / "merchant.toml"


def log_path(home: Path) -> Path:
    """`<home>/merchant/agent.log`: the agent's output."""
    return merchant_directory(home) / "agent.log"


def demo_codes(count: int) -> list[str]:
    """`count` distinct random gift-card codes, `GIFT-25-XXXX-XXXX-XXXX`."""
    codes: set[str] = set()
    while len(codes) < count:
        digits = secrets.token_hex(6).upper()
        codes.add(f"GIFT-25-{digits[:4]}-{digits[4:8]}-{digits[8:]}")
    return sorted(codes)


def write_merchant_home(home: Path, url: str, shop_id: str, listing_id: str) -> Path:
    """Write merchant.toml for `shop_id` (delivering `listing_id` from codes; parcel orders are
    left to the merchant) and import `GIFT_CARD_CODES` codes; return the config's path."""
    directory = merchant_directory(home)
    directory.mkdir(parents=True, exist_ok=True)
    path = config_path(home)
    path.write_text(f"""# The devnet's merchant agent: `marketchain merchant run` (docs/merchant-agent.md).
[node]
url = "{url}"

[agent]
state_dir = "state"
shops = ["{shop_id}"]

[accept]
auto = false                     # parcel orders stay for Bob at the terminal (marketchain tx order-accept)

[[digital]]
listing = "{listing_id}"         # Gift card 25 MKT: one code per unit, sealed to the buyer
""")
    inventory_directory = load_config(path, {}).inventory_dir
    key = create_inventory_key(inventory_directory, DEVNET_INVENTORY_PASSPHRASE,
                               nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    Inventory(inventory_directory, key).add_codes(bytes.fromhex(listing_id), demo_codes(GIFT_CARD_CODES))
    return path


def start_agent(home: Path) -> subprocess.Popen[bytes] | None:
    """`marketchain merchant run` for the devnet in `home` as a background process (its own
    session, so a terminal's Ctrl-C reaches only the devnet, which stops it); None if the
    devnet has no merchant folder (made before issue 16)."""
    path = config_path(home)
    if not path.exists():
        return None
    key_file = home / "accounts" / f"{MERCHANT_ACCOUNT}.json"
    with open(log_path(home), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "merchant", "run", "--key", str(key_file), "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(REPOSITORY_ROOT), env={**os.environ, INVENTORY_PASSPHRASE_VARIABLE: DEVNET_INVENTORY_PASSPHRASE},
        )
    (merchant_directory(home) / PID_FILE).write_text(f"{process.pid}\n")
    return process


def stop_agent(process: subprocess.Popen[bytes] | None) -> int | None:
    """SIGTERM the agent, wait `AGENT_STOP_SECONDS`, SIGKILL it if it is still running; its exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(AGENT_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
