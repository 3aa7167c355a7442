"""The receiver snippet of docs/webhooks.md runs as printed and agrees with the agent's signing
(client/merchant/webhooks.py): a signed body verifies and is handled once by id; a tampered
body, another secret or an old timestamp answers 400."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from client.merchant.webhooks import request_headers
from tests.paths import REPO_ROOT

SNIPPET = re.search(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "webhooks.md").read_text(), re.S)


def receiver(secret: bytes) -> dict[str, Any]:
    assert SNIPPET is not None, "docs/webhooks.md has no python snippet"
    namespace: dict[str, Any] = {}
    exec(compile(SNIPPET.group(1), "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own doc
    namespace["SECRET"] = secret
    return namespace


def test_the_documented_receiver_verifies_the_agents_signature_and_dedupes_by_id() -> None:
    secret = b"whsec_test-secret"
    snippet = receiver(secret)
    body = json.dumps({"id": "evt_1", "type": "order.placed", "created": 1,
                       "data": {"to": "placed", "order": {"id": "ab" * 32}}}).encode()
    now = int(time.time())
    headers = request_headers("evt_1", secret, body, now)
    assert snippet["handle"](body, headers) == 200
    assert snippet["seen_ids"] == {"evt_1"}
    assert snippet["handle"](body, headers) == 200 and snippet["seen_ids"] == {"evt_1"}  # a retry
    assert snippet["handle"](body + b" ", headers) == 400
    assert snippet["handle"](body, request_headers("evt_1", b"another", body, now)) == 400
    assert snippet["handle"](body, request_headers("evt_1", secret, body, now - 3600)) == 400
