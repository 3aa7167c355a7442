"""Bad requests to the marketplace read endpoints on a real node (PROTOCOL §10): every
parameter that does not parse, or is given empty, is 400 `invalid_query` naming it; unknown
ids are 404 `not_found`; random paths and queries never make a server error.
"""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.node_process import NodeProcess, http_request, is_error_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    with NodeProcess(tmp_path_factory.mktemp("market_bad") / "node") as running:
        yield running


# --- bad requests -----------------------------------------------------------------------------

UNKNOWN = "ab" * 32


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("/orders/xyz", 400, "id"),
        (f"/orders/{UNKNOWN}", 404, ""),
        (f"/shops/{UNKNOWN}", 404, ""),
        (f"/shops/{UNKNOWN}/reviews", 404, ""),
        ("/shops/12/reviews", 400, "id"),
        (f"/listings/{UNKNOWN}", 404, ""),
        ("/items/bad!id", 400, "id"),
        ("/items/" + "a" * 65, 400, "id"),
        ("/items/no-such-item", 404, ""),
        ("/accounts/zz/txs", 400, "address"),
        ("/listings?limit=0", 400, "limit"),
        ("/listings?limit=101", 400, "limit"),
        ("/listings?cursor=zz", 400, "cursor"),
        ("/listings?min_price=-1", 400, "min_price"),
        ("/listings?min_price=5&max_price=1", 400, "min_price"),
        ("/listings?active=maybe", 400, "active"),
        ("/listings?q=%21%21%21", 400, "q"),
        ("/listings?shop=1", 400, "shop"),
        ("/listings?tag=" + "x" * 33, 400, "tag"),
        ("/orders?state=lost", 400, "state"),
        ("/orders?buyer=123", 400, "buyer"),
        ("/shops?owner=nothex", 400, "owner"),
        ("/shops?limit=1.5", 400, "limit"),
    ],
)
def test_bad_requests(node: NodeProcess, path: str, status: int, names: str) -> None:
    code, body = node.get(path)
    assert code == status and is_error_body(body), (path, code, body)
    assert body["error"]["code"] == ("invalid_query" if status == 400 else "not_found")
    assert names in body["error"]["message"]


EMPTY_PARAMETERS = (
    "/shops?owner=",
    "/shops?limit=",
    "/shops?cursor=",
    f"/shops/{UNKNOWN}/reviews?cursor=",
    f"/shops/{UNKNOWN}/stats?days=",
    "/listings?q=",
    "/listings?tag=",
    "/listings?shop=",
    "/listings?min_price=",
    "/listings?max_price=",
    "/listings?active=",
    "/orders?buyer=",
    "/orders?merchant=",
    "/orders?shop=",
    "/orders?state=",
    f"/accounts/{UNKNOWN}/txs?limit=",
    "/events?account=",
    "/events?order=",
    "/events?last_event_id=",
)
"""Every optional query parameter of the marketplace and event routes, given empty."""


@pytest.mark.parametrize("path", EMPTY_PARAMETERS)
def test_an_empty_parameter_is_an_invalid_query_not_an_absent_one(node: NodeProcess, path: str) -> None:
    code, body = node.get(path)
    name = path.rpartition("?")[2].removesuffix("=")
    assert code == 400 and is_error_body(body), (path, code, body)
    assert body["error"]["code"] == "invalid_query" and name in body["error"]["message"], body


MARKET_ROUTES = (
    "/shops",
    "/shops/{}",
    "/shops/{}/reviews",
    "/listings",
    "/listings/{}",
    "/orders",
    "/orders/{}",
    "/items/{}",
    "/accounts/{}/txs",
)
QUERY_NAMES = (
    "q",
    "tag",
    "shop",
    "min_price",
    "max_price",
    "active",
    "limit",
    "cursor",
    "buyer",
    "merchant",
    "state",
    "owner",
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    route=st.sampled_from(MARKET_ROUTES),
    segment=st.text(max_size=70),
    query=st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=40), max_size=4),
)
def test_fuzz_never_a_server_error(
    node: NodeProcess, route: str, segment: str, query: dict[str, str]
) -> None:
    url = route.format(urllib.parse.quote(segment, safe="")) if "{}" in route else route
    if query:
        url += "?" + urllib.parse.urlencode(query)
    response = http_request(node.url + url)
    assert response.status < 500, (url, response)
    if response.status >= 400:
        assert is_error_body(response.body), (url, response)
