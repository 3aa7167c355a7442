"""merchant.toml (client/merchant/config.py): the documented keys parse, every bad key or value
is a ConfigError naming it, and `marketchain merchant run` exits 2 on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands.merchant import merchant
from client.merchant.config import MAX_CONFIG_BYTES, ConfigError, load_config

SHOP = "aa" * 32
LISTING = "bb" * 32

FULL = f"""
[node]
url = "http://127.0.0.1:26657"
[agent]
state_dir = "state"
shops = ["{SHOP}"]
warn_before_ms = 3600000
[accept]
auto = false
max_amount = 5000000
listings = ["{LISTING}"]
[[digital]]
listing = "{LISTING}"
[webhook]
url = "http://127.0.0.1:8080/hooks"
secret = "whsec_test"
retry_for_s = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "merchant.toml"
    path.write_text(text)
    return path


def test_every_documented_key_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), {})
    assert config.node_url == "http://127.0.0.1:26657"
    assert config.state_dir == (tmp_path / "state").resolve()
    assert config.shops == {bytes.fromhex(SHOP)} and config.warn_before_ms == 3_600_000
    assert (config.accept.auto, config.accept.max_amount) == (False, 5_000_000)
    assert config.accept.listings == {bytes.fromhex(LISTING)} == config.digital_listings
    assert config.webhook.url == "http://127.0.0.1:8080/hooks" and config.webhook.secret == b"whsec_test"
    assert config.webhook.retry_for_s == 60
    assert config.inventory_dir == config.state_dir / "inventory" and config.outbox_dir == config.state_dir / "webhooks"


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {})
    assert config.node_url == "http://127.0.0.1:26657" and config.state_dir == (tmp_path / "merchant-state").resolve()
    assert config.shops == frozenset() and config.accept.auto and config.accept.max_amount == 0
    assert config.digital_listings == frozenset() and config.webhook is None and config.warn_before_ms == 86_400_000


@pytest.mark.parametrize(("text", "named"), [
    ("[shop]\nname = 1", "'shop'"),
    ("verbose = true", "'verbose'"),
    ("[node]\nhost = \"x\"", "[node] 'host'"),
    ("[agent]\nstate = \"x\"", "[agent] 'state'"),
    ("[accept]\nmax = 1", "[accept] 'max'"),
    ("[[digital]]\nlisting = \"" + LISTING + "\"\ncodes = 3", "[[digital]] 'codes'"),
    ("[[digital]]\nname = \"x\"", "[[digital]] 'name'"),
    ("[[digital]]", "needs listing"),
    ("[[digital]]\nlisting = \"abc\"", "[[digital]] listing"),
    ("digital = 3", "[[digital]]"),
    ("node = 3", "[node] must be a table"),
    ("[node]\nurl = \"ftp://x\"", "[node] url"),
    ("[node]\nurl = 5", "[node] url must be a str"),
    ("[agent]\nstate_dir = 5", "[agent] state_dir"),
    ("[agent]\nshops = \"" + SHOP + "\"", "[agent] shops"),
    ("[agent]\nshops = [\"xyz\"]", "[agent] shops"),
    ("[agent]\nwarn_before_ms = -1", "[agent] warn_before_ms"),
    ("[agent]\nwarn_before_ms = 1.5", "[agent] warn_before_ms"),
    ("[accept]\nauto = \"yes\"", "[accept] auto"),
    ("[accept]\nmax_amount = true", "[accept] max_amount"),
    ("[accept]\nlistings = [1]", "[accept] listings"),
    ("[webhook]\nurl = \"http://127.0.0.1/h\"\nsecret = \"s\"\nretries = 3", "[webhook]"),
    ("[webhook]\nsecret = \"s\"", "[webhook]"),
    ("webhook = 1", "[webhook] must be a table"),
    ("[node\n", "not valid TOML"),
])
def test_every_bad_key_or_value_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), {})
    assert named in str(raised.value)


def test_a_missing_or_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_BYTES}"):
        load_config(write(tmp_path, "#" * (MAX_CONFIG_BYTES + 1)), {})


def test_merchant_run_exits_2_on_a_bad_config_key_or_state(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = write(tmp_path, "[agent]\nshopz = []\n")
    result = runner.invoke(merchant, ["run", "--key", str(tmp_path / "nokey.json"), "--config", str(bad)])
    assert result.exit_code == 2 and "[agent] 'shopz'" in result.output
    good = write(tmp_path, "")
    result = runner.invoke(merchant, ["run", "--key", str(tmp_path / "nokey.json"), "--config", str(good)])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "bad.json").write_text("{}")
    result = runner.invoke(merchant, ["run", "--key", str(tmp_path / "bad.json"), "--config", str(good)],
                           env={"MARKETCHAIN_TEST_AGENT_CRASH": "nowhere"})
    assert result.exit_code == 2


def test_codes_commands_exit_2_on_a_bad_config_and_list_says_when_empty(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = write(tmp_path, "[accept]\nauto = 1\n")
    assert runner.invoke(merchant, ["codes", "list", "--config", str(bad)]).exit_code == 2
    good = write(tmp_path, "")
    result = runner.invoke(merchant, ["codes", "list", "--config", str(good)])
    assert result.exit_code == 0 and "no codes imported yet" in result.output


def test_merchant_run_exits_2_on_a_wrong_inventory_passphrase_or_a_second_agent(tmp_path: Path) -> None:
    import fcntl
    import json

    import nacl.pwhash

    from client.merchant.inventory_crypto import create_inventory_key
    from marketplace_tx.primitives.crypto import KeyPair

    key = KeyPair.from_seed(bytes([2]) * 32)
    key_file = tmp_path / "merchant.json"
    key_file.write_text(json.dumps({"address": key.address.hex(), "secret_seed": key.seed.hex()}))
    config = write(tmp_path, f'[agent]\nstate_dir = "state"\n[[digital]]\nlisting = "{LISTING}"\n')
    runner = CliRunner()
    arguments = ["run", "--key", str(key_file), "--config", str(config)]
    result = runner.invoke(merchant, arguments, env={"MARKETCHAIN_INVENTORY_PASSPHRASE": "whatever1"})
    assert result.exit_code == 2 and "import them first" in result.output
    create_inventory_key(tmp_path / "state" / "inventory", "the right one", nacl.pwhash.argon2id.OPSLIMIT_MIN,
                         nacl.pwhash.argon2id.MEMLIMIT_MIN)
    result = runner.invoke(merchant, arguments, env={"MARKETCHAIN_INVENTORY_PASSPHRASE": "the wrong one"})
    assert result.exit_code == 2 and "wrong passphrase" in result.output
    with open(tmp_path / "state" / "agent.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = runner.invoke(merchant, arguments, env={"MARKETCHAIN_INVENTORY_PASSPHRASE": "the right one"})
    assert result.exit_code == 2 and "another merchant agent runs" in result.output
