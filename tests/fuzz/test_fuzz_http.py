"""Fuzzing of the HTTP API of a real node (PROTOCOL §10).

Random bodies with every content type, random query strings and random path
segments for every GET route of the OpenAPI document, random paths and methods:
every answer is below 500 and every error has the JSON shape
`{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import http.client
import json
import string
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace_tx.chain.transaction import sign_transaction
from node.http.openapi import OPERATIONS
from tests.e2e.node_process import NodeProcess, is_error_body
from tests.fuzz.strategies import (
    ANY_TEXT,
    CONTENT_TYPES,
    COUNTS,
    KEYS,
    TEXT,
    fuzz_settings,
    iteration_report,
    post_bodies,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_http.py")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Limits high enough that the fuzzing reaches every handler (the middleware still runs).
    config = {"http": {"rate_per_ip": 1_000_000, "burst_per_ip": 1_000_000}}
    with NodeProcess(tmp_path_factory.mktemp("fuzz-http") / "node", config=config) as running:
        validator = running.validator_key
        chain_id = running.status()["chain_id"]
        tx = sign_transaction(validator, chain_id, "transfer", {"to": KEYS[1].address, "amount": 1}, 0, 10)
        running.wait_for_tx(running.submit(tx.raw))  # block 1 exists: deeper paths for heights
        yield running


def request(node: NodeProcess, method: str, target: str, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, str, Any]:
    """One request on a fresh connection: (status, media type, body: parsed JSON, else bytes).

    An event stream is not read past its headers (its body is None)."""
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        if media_type == "text/event-stream":
            return response.status, media_type, None
        raw = response.read()
    finally:
        connection.close()
    parsed: Any = raw
    if media_type == "application/json" and raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            pass
    return response.status, media_type, parsed


def assert_clean(status: int, media_type: str, body: Any, what: Any) -> None:
    assert status < 500, (what, status, body)
    if status >= 400:
        assert media_type == "application/json" and is_error_body(body), (what, status, media_type, body)



@pytest.mark.integration
@fuzz_settings(150)
@given(body=post_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
def test_http_post_bodies(node: NodeProcess, body: bytes, content_type: str | None) -> None:
    """§10: POST /txs and /txs/batch answer < 500 with the JSON error shape, whatever the body."""
    COUNTS["HTTP POST /txs, /txs/batch bodies"] += 1
    for path in ("/txs", "/txs/batch"):
        status, media_type, answer = request(node, "POST", path, body, content_type)
        assert_clean(status, media_type, answer, (path, content_type, body))
        if status == 202:
            assert path == "/txs" and set(answer) == {"hash"}
        elif status == 200:
            assert path == "/txs/batch" and set(answer) == {"results"}
            for result in answer["results"]:
                assert set(result) == {"hash"} or is_error_body(result), result


def path_values() -> dict[str, str]:
    return {"hash": "00" * 32, "id": "ab" * 32, "address": KEYS[1].address.hex(), "height": "1",
            "name": "app.js", "index": "0"}


GET_OPERATIONS = [operation for operation in OPERATIONS if operation.method == "GET"]
QUERY_NAMES = sorted({parameter["name"] for operation in GET_OPERATIONS for parameter in operation.parameters
                      if parameter.get("in") == "query"})
QUERY_TEXT = st.text(st.sampled_from(string.ascii_letters + string.digits + string.punctuation.replace("#", "")),
                     max_size=40)
"""Raw query characters, `%` included: random percent escapes, invalid UTF-8 among them."""


def encoded(text: str) -> str:
    return urllib.parse.quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(QUERY_TEXT)
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | TEXT,
                                    ANY_TEXT | st.sampled_from(["", "0", "1", "-1", "100", "101", "²", "1e3",
                                                                "ab" * 32, "AB" * 32, "00" * 33, "true",
                                                                "placed", "18446744073709551616", "1:2"])),
                          max_size=4))
    return "&".join(f"{encoded(name)}={encoded(value)}" for name, value in pairs)


@pytest.mark.integration
@fuzz_settings(250)
@given(operation=st.sampled_from(GET_OPERATIONS), query=query_strings())
def test_http_get_query_strings(node: NodeProcess, operation: Any, query: str) -> None:
    """§10: every GET route answers a random query string with < 500 and the JSON error shape."""
    COUNTS["HTTP GET query strings"] += 1
    target = operation.path.format(**path_values()) + "?" + query
    status, media_type, body = request(node, "GET", target)
    assert_clean(status, media_type, body, target)


@pytest.mark.integration
@fuzz_settings(250)
@given(operation=st.sampled_from([operation for operation in GET_OPERATIONS if "{" in operation.path]),
       segment=ANY_TEXT | st.sampled_from(["..", ".", "%", "0" * 21, "²", "ab" * 32, "AB" * 32, "-1", "1e3",
                                           "a\x00.js", ".hidden.js", "../index.html", "item:1"]),
       extra=st.sampled_from(["", "/", "/x", "//"]))
def test_http_random_path_segments(node: NodeProcess, operation: Any, segment: str, extra: str) -> None:
    """§10: random path segments in every templated GET route answer < 500 with the JSON error shape."""
    COUNTS["HTTP GET path segments"] += 1
    values = {name: encoded(segment) for name in path_values()}
    target = operation.path.format(**values) + extra
    status, media_type, body = request(node, "GET", target)
    assert_clean(status, media_type, body, target)


@pytest.mark.integration
@fuzz_settings(100)
@given(path=st.lists(ANY_TEXT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(map(encoded, parts))),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
def test_http_random_paths_and_methods(node: NodeProcess, path: str, method: str) -> None:
    COUNTS["HTTP random paths and methods"] += 1
    status, media_type, body = request(node, method, path, b"" if method in ("POST", "PUT", "PATCH") else None)
    assert status < 500, (method, path, status, body)
    if status >= 400 and method != "HEAD":
        assert media_type == "application/json" and is_error_body(body), (method, path, status, body)
    assert node.running
