"""What `merchant run` and `merchant codes` share: the config, the inventory's passphrase and
errors of setup, which exit with code 2 (a bad config, key or passphrase) like the node's."""

from __future__ import annotations

import os
import sys

import click

from client.keystore import PASSPHRASE_ENVIRONMENT_VARIABLE
from client.merchant.config import ConfigError, MerchantConfig, load_config
from client.merchant.inventory_crypto import INVENTORY_PASSPHRASE_VARIABLE


class SetupError(click.ClickException):
    """A bad config, key, passphrase or state directory: `Error: ...` and exit code 2."""

    exit_code = 2


def load_merchant_config(path: str) -> MerchantConfig:
    """merchant.toml at `path`, or `SetupError` naming the bad key."""
    try:
        return load_config(path)
    except ConfigError as error:
        raise SetupError(str(error)) from None


def inventory_passphrase() -> str:
    """$MARKETCHAIN_INVENTORY_PASSPHRASE, else $MARKETCHAIN_PASSPHRASE, else a hidden prompt on a
    terminal; `SetupError` when none is possible."""
    for variable in (INVENTORY_PASSPHRASE_VARIABLE, PASSPHRASE_ENVIRONMENT_VARIABLE):
        value = os.environ.get(variable)
        if value is not None:
            return value
    if not sys.stdin.isatty():
        raise SetupError(f"the inventory's passphrase is needed: set {INVENTORY_PASSPHRASE_VARIABLE} "
                         f"(or {PASSPHRASE_ENVIRONMENT_VARIABLE}) or run interactively")
    return click.prompt("Inventory passphrase", hide_input=True)
