"""Webhook settings, bodies, signatures (the Stripe convention) and the retry schedule (issue 16)."""

from __future__ import annotations

import json
import random

import pytest

from client.merchant.webhook_sender import backoff_ceiling, backoff_delay
from client.merchant.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSettings,
    compute_signature,
    event_body,
    request_headers,
    signature_header,
    verify_signature,
)

SECRET = b"whsec_test_secret"
BODY = event_body("evt_1", "order.accepted", 1_700_000_000_000, {"order": {"id": "ab"}, "to": "accepted"})
NOW = 1_700_000_100


def test_a_signature_verifies() -> None:
    header = signature_header(SECRET, BODY, NOW)
    assert header == f"t={NOW},v1={compute_signature(SECRET, BODY, NOW)}"
    assert verify_signature(SECRET, BODY, header, 300, NOW + 10)


def test_a_tampered_body_or_another_secret_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW)
    assert not verify_signature(SECRET, BODY.replace(b"accepted", b"rejected"), header, 300, NOW)
    assert not verify_signature(SECRET, BODY + b" ", header, 300, NOW)
    assert not verify_signature(b"whsec_other", BODY, header, 300, NOW)
    tampered_time = header.replace(f"t={NOW}", f"t={NOW + 1}")
    assert not verify_signature(SECRET, BODY, tampered_time, 300, NOW)


def test_an_old_or_future_timestamp_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW)
    assert verify_signature(SECRET, BODY, header, 300, NOW + 300)
    assert not verify_signature(SECRET, BODY, header, 300, NOW + 301)
    assert not verify_signature(SECRET, BODY, header, 300, NOW - 301)


@pytest.mark.parametrize("header", [
    "", "v1=abc", f"t={NOW}", f"t=abc,v1={'0' * 64}", f"t={NOW},t={NOW},v1={'0' * 64}",
    f"t=-{NOW},v1={'0' * 64}", "garbage", f"t={'9' * 40},v1=00",
])
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify_signature(SECRET, BODY, header, 300, NOW)


def test_any_v1_entry_may_match_while_secrets_rotate() -> None:
    good = compute_signature(SECRET, BODY, NOW)
    assert verify_signature(SECRET, BODY, f"t={NOW},v1={'0' * 64},v1={good}", 300, NOW)


def test_headers_carry_the_signature_the_id_and_json() -> None:
    headers = request_headers("evt_1", SECRET, BODY, NOW)
    assert headers[EVENT_ID_HEADER] == "evt_1"
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, BODY, headers[SIGNATURE_HEADER], 300, NOW)


def test_the_body_is_the_same_bytes_every_time() -> None:
    data = {"order": {"id": "ab", "history": [{"state": "placed"}]}, "height": 7}
    first = event_body("evt_2", "order.placed", 5, data)
    assert first == event_body("evt_2", "order.placed", 5, json.loads(json.dumps(data)))
    assert json.loads(first) == {"id": "evt_2", "type": "order.placed", "created": 5, "data": data}


def test_settings_from_a_table_with_defaults() -> None:
    settings = WebhookSettings.from_table({"url": "https://shop.example/hooks", "secret": "whsec_x"}, {})
    assert settings == WebhookSettings("https://shop.example/hooks", b"whsec_x")
    assert (settings.retry_for_s, settings.first_backoff_s, settings.max_backoff_s,
            settings.timeout_s) == (86_400.0, 1.0, 3_600.0, 10.0)


def test_the_secret_is_not_in_the_settings_repr() -> None:
    settings = WebhookSettings.from_table({"url": "https://shop.example/hooks", "secret": "whsec_hidden"}, {})
    assert "whsec_hidden" not in repr(settings) and "hidden" not in str(settings)


def test_settings_read_the_secret_from_the_environment() -> None:
    table = {"url": "http://127.0.0.1:8080/hooks", "secret_env": "SHOP_HOOK_SECRET", "retry_for_s": 60,
             "first_backoff_s": 0.5, "max_backoff_s": 30, "timeout_s": 5}
    settings = WebhookSettings.from_table(table, {"SHOP_HOOK_SECRET": "whsec_env"})
    assert settings == WebhookSettings("http://127.0.0.1:8080/hooks", b"whsec_env", 60.0, 0.5, 30.0, 5.0)
    with pytest.raises(ValueError, match="SHOP_HOOK_SECRET"):
        WebhookSettings.from_table(table, {})


@pytest.mark.parametrize(("table", "message"), [
    ({"url": "http://h/x", "secret": "s", "retries": 3}, "no option 'retries'"),
    ({"secret": "s"}, "url must be"),
    ({"url": "ftp://h/x", "secret": "s"}, "url must be"),
    ({"url": "http:///x", "secret": "s"}, "url must be"),
    ({"url": "http://h/x"}, "exactly one of secret or secret_env"),
    ({"url": "http://h/x", "secret": "s", "secret_env": "S"}, "exactly one of secret or secret_env"),
    ({"url": "http://h/x", "secret": ""}, "non-empty"),
    ({"url": "http://h/x", "secret": 5}, "non-empty string"),
    ({"url": "http://h/x", "secret": "s", "retry_for_s": 0}, "retry_for_s must be a positive"),
    ({"url": "http://h/x", "secret": "s", "timeout_s": True}, "timeout_s must be a positive"),
    ({"url": "http://h/x", "secret": "s", "timeout_s": float("nan")}, "timeout_s must be a positive"),
    ({"url": "http://h/x", "secret": "s", "first_backoff_s": 5, "max_backoff_s": 1}, "max_backoff_s"),
])
def test_bad_settings_are_refused_by_name(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookSettings.from_table(table, {})


def test_the_backoff_ceiling_doubles_up_to_the_maximum() -> None:
    settings = WebhookSettings("http://h/x", b"s", first_backoff_s=1.0, max_backoff_s=3600.0)
    assert [backoff_ceiling(attempt, settings) for attempt in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]
    assert backoff_ceiling(13, settings) == 3600.0
    assert backoff_ceiling(10_000, settings) == 3600.0


def test_full_jitter_stays_below_the_ceiling_and_grows_with_it() -> None:
    settings = WebhookSettings("http://h/x", b"s", first_backoff_s=1.0, max_backoff_s=64.0)
    rng = random.Random(16)
    means = []
    for attempt in range(1, 9):
        delays = [backoff_delay(attempt, settings, rng) for _ in range(400)]
        assert all(0.0 <= delay <= backoff_ceiling(attempt, settings) for delay in delays)
        means.append(sum(delays) / len(delays))
    assert all(later > earlier * 1.5 for earlier, later in zip(means[:6], means[1:7], strict=True))
    assert 0.4 * 64 < means[7] < 0.6 * 64
