"""The agent's small state (client/merchant/cursor.py, crash_points.py, decisions.py,
deadline_warnings.py): the cursor never goes back and survives a reopen, crash points parse and
kill once, and the decision rules of merchant.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.merchant.config import AcceptRules, MerchantConfig
from client.merchant.crash_points import CrashPoints
from client.merchant.cursor import Cursor, CursorError
from client.merchant.deadline_warnings import DeadlineWarnings
from client.merchant.decisions import decide, is_mine, needs_deadline_warning
from tests.paths import REPO_ROOT

LISTING, OTHER = "aa" * 32, "bb" * 32
MERCHANT = bytes([1]) * 32


def test_the_cursor_persists_and_never_goes_back(tmp_path: Path) -> None:
    cursor = Cursor(tmp_path)
    assert cursor.last_event_id is None and cursor.height == 0
    cursor.advance("12:3")
    cursor.advance("12:1")
    cursor.advance("9:40")
    assert Cursor(tmp_path).last_event_id == "12:3" and Cursor(tmp_path).height == 12
    cursor.advance("13:0")
    assert Cursor(tmp_path).last_event_id == "13:0"
    (tmp_path / "cursor.json").write_text("{")
    with pytest.raises(CursorError, match="damaged"):
        Cursor(tmp_path)
    with pytest.raises(ValueError):
        cursor.advance("x:1")


def test_crash_points_parse_and_fire_once_per_state_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="after_reserve"):
        CrashPoints(tmp_path, {"MARKETCHAIN_TEST_AGENT_CRASH": "before_lunch"})
    points = CrashPoints(tmp_path, {"MARKETCHAIN_TEST_AGENT_CRASH": "after_submit:2"})
    assert (points.point, points.nth) == ("after_submit", 2)
    points.reach("after_reserve")
    points.reach("after_submit")  # the first time: not yet
    script = ("from pathlib import Path; from client.merchant.crash_points import CrashPoints; "
              f"p = CrashPoints(Path({str(tmp_path)!r}), {{'MARKETCHAIN_TEST_AGENT_CRASH': 'after_final'}}); "
              "p.reach('after_final'); print('alive')")
    first = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == -9 and (tmp_path / "crashed-after_final").exists()
    second = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and second.stdout.strip() == "alive"


def config(**accept: object) -> MerchantConfig:
    return MerchantConfig(path=Path("m.toml"), accept=AcceptRules(**accept),  # type: ignore[arg-type]
                          digital_listings=frozenset({bytes.fromhex(LISTING)}))


def order(state: str = "placed", digital: bool = False, listing: str = LISTING, escrow: int = 100) -> dict:
    return {"id": "cc" * 32, "state": state, "digital": digital, "listing_id": listing, "escrow": escrow,
            "merchant": MERCHANT.hex(), "shop_id": "dd" * 32, "deadline": 10_000}


def test_decisions_follow_the_accept_rules() -> None:
    assert decide(order(), config()).action == "accept"
    assert decide(order(escrow=100), config(max_amount=100)).action == "accept"
    assert "max_amount" in decide(order(escrow=101), config(max_amount=100)).reason
    assert decide(order(escrow=10**12), config(max_amount=0)).action == "accept"  # 0: no limit
    assert decide(order(), config(auto=False)).action == "leave"
    assert decide(order(listing=OTHER), config(listings=frozenset({bytes.fromhex(LISTING)}))).action == "leave"
    assert decide(order(state="accepted"), config()).action == "none"
    assert decide(order(state="shipped"), config()).action == "none"


def test_decisions_for_digital_orders() -> None:
    assert decide(order(digital=True), config(auto=False)).action == "deliver"  # auto is about parcels
    assert decide(order(state="accepted", digital=True), config()).action == "deliver"
    assert decide(order(digital=True, listing=OTHER), config()).action == "leave"
    assert decide(order(state="delivered", digital=True), config()).action == "none"


def test_only_the_configured_shops_are_the_agents() -> None:
    assert is_mine(order(), config(), MERCHANT)
    assert not is_mine(order(), config(), bytes(32))
    only = MerchantConfig(path=Path("m.toml"), shops=frozenset({bytes([9]) * 32}))
    assert not is_mine(order(), only, MERCHANT)


def test_deadline_warnings_are_given_once_and_forgotten_after_the_deadline(tmp_path: Path) -> None:
    accepted = order(state="accepted")
    assert needs_deadline_warning(accepted, now_ms=5_000, warn_before_ms=5_000)
    assert not needs_deadline_warning(accepted, now_ms=4_999, warn_before_ms=5_000)
    assert not needs_deadline_warning(order(state="accepted", digital=True), 9_999, 5_000)
    assert not needs_deadline_warning(order(state="placed"), 9_999, 5_000)
    warnings = DeadlineWarnings(tmp_path)
    due = warnings.due(accepted, 6_000, 5_000)
    assert due is not None and due[1]["deadline"] == 10_000
    warnings.given(due[0], 10_000, 6_000)
    assert DeadlineWarnings(tmp_path).due(accepted, 7_000, 5_000) is None
    DeadlineWarnings(tmp_path).given("evt_other", 20_000, 11_000)
    assert DeadlineWarnings(tmp_path).given_ids == {"evt_other": 20_000}
