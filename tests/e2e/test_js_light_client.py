"""The explorer's light client (node/http/static/light_client.js, R37) in the real browser,
against the Python one (client/light_client.py) on the same chain of real headers and
commits whose validator set changes three times (tests/unit/client/light_chain.py).

Every height verifies through the change points in both; every tampered input (each byte
of the target and change-point headers, of the commit signatures and of the next sets; a
dropped change point; 2/3 exactly; a duplicated signer; another chain) is refused by both.
The genesis hash the browser computes is the node's (R33), and a genesis that hashes to
anything else than the trusted hash is refused. Skipped without a browser.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from client.light_client import LightClientError, commit_from_json, verify_header
from tests.e2e.static_page import page_driver, run_module_script
from tests.unit.client.light_chain import (
    CHANGE_HEIGHTS,
    TOP,
    build_chain,
    change_point_json,
    change_points,
    commit_for,
    commit_json,
    genesis,
    header_bytes,
    make_header,
    set_keys,
)

pytestmark = pytest.mark.integration

driver = page_driver
"""The real Chromium these tests run their modules in (a module-scoped fixture)."""

CHAIN = build_chain()
CHANGES = [change_point_json(change) for change in change_points(CHAIN)]
GENESIS = genesis()


VERIFY = """
const {trustGenesis, verifyHeader} = await load("light_client.js");
const {fromHex} = await load("verify.js");
const trusted = await trustGenesis(argument.genesis, argument.genesis_hash);
const outcomes = [];
for (const item of argument.cases) {
  try {
    const verified = await verifyHeader(trusted, item.changes, fromHex(item.header), item.commit, item.height);
    outcomes.push({ok: true, height: verified.height, hash: verified.blockHash, signers: verified.signers.length,
      validators: verified.validators.length, state_root: verified.header.state_root});
  } catch (error) {
    if (error.constructor.name !== "LightClientError") throw error;
    outcomes.push({ok: false, message: error.message});
  }
}
return outcomes;
"""


def _case(height: int = TOP, changes: list[Any] | None = None, header: bytes | None = None,
          commit: Any = None) -> dict[str, Any]:
    return {"height": height, "changes": CHANGES if changes is None else changes,
            "header": (header if header is not None else CHAIN[height].header).hex(),
            "commit": commit if commit is not None else commit_json(CHAIN[height].commit)}


def _python_accepts(case: dict[str, Any]) -> bool:
    try:
        commit = commit_from_json(case["commit"])
        verify_header(GENESIS, case["changes"], bytes.fromhex(case["header"]), commit, case["height"])
    except (LightClientError, ValueError):
        return False
    return True


def _run(driver: Any, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    argument = {"genesis": GENESIS.to_json(), "genesis_hash": GENESIS.hash.hex(), "cases": cases}
    return run_module_script(driver, VERIFY, argument)


def _flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


def test_every_height_verifies_through_the_set_changes_as_in_python(driver: Any) -> None:
    cases = [_case(height) for height in range(1, TOP + 1)]
    outcomes = _run(driver, cases)
    for height, outcome in zip(range(1, TOP + 1), outcomes, strict=True):
        assert outcome["ok"], (height, outcome)
        assert outcome["hash"] == make_header(height).hash.hex()
        assert outcome["signers"] == outcome["validators"] == len(set_keys(height))
        assert outcome["state_root"] == make_header(height).state_root.hex()
    assert all(_python_accepts(case) for case in cases)
    # 3, 6 and 9 are change points; each verified above with the set before it (set_keys(height))
    assert set(CHANGE_HEIGHTS) < set(range(1, TOP + 1))


def _refused_cases() -> list[dict[str, Any]]:
    top = CHAIN[TOP]
    cases = [_case(header=_flipped(top.header, index)) for index in range(len(top.header))]
    for position, change in enumerate(CHANGES):
        header = bytes.fromhex(change["header"])
        for index in range(len(header)):
            tampered = {**change, "header": _flipped(header, index).hex()}
            cases.append(_case(changes=[*CHANGES[:position], tampered, *CHANGES[position + 1:]]))
        for which in range(len(change["next_validators"])):
            for index in range(0, 32, 3):
                listed = list(change["next_validators"])
                listed[which] = _flipped(bytes.fromhex(listed[which]), index).hex()
                cases.append(_case(changes=[*CHANGES[:position], {**change, "next_validators": listed},
                                            *CHANGES[position + 1:]]))
        cases.append(_case(changes=[item for item in CHANGES if item is not change]))  # a change point dropped
    commit = commit_json(top.commit)
    for which in range(len(commit["signatures"])):
        for index in range(0, 64, 5):
            signatures = [dict(entry) for entry in commit["signatures"]]
            signatures[which]["signature"] = _flipped(bytes.fromhex(signatures[which]["signature"]), index).hex()
            cases.append(_case(commit={**commit, "signatures": signatures}))
    header = make_header(TOP)
    keys = set_keys(TOP)
    few = len(keys) * 2 // 3
    cases.append(_case(commit=commit_json(commit_for(header, keys[:few]))))      # 2/3 or fewer
    cases.append(_case(commit=commit_json(commit_for(header, set_keys(1)))))     # the genesis set signed
    cases.append(_case(commit=commit_json(commit_for(header, chain_id="another-chain"))))
    cases.append(_case(commit={**commit, "signatures": [commit["signatures"][0]] * len(keys)}))
    cases.append(_case(commit={**commit, "signatures": commit["signatures"][::-1]}))
    cases.append(_case(commit={**commit, "height": TOP - 1}))
    cases.append(_case(height=TOP - 1, header=top.header, commit=commit))         # not the asked height
    cases.append(_case(changes=[]))                                               # no change point at all
    cases.append(_case(changes=CHANGES[::-1]))
    padded = {**CHANGES[0], "header": CHANGES[0]["header"] + "00"}
    cases.append(_case(changes=[padded, *CHANGES[1:]]))                           # not canonical
    foreign = dataclasses.replace(make_header(TOP), chain_id="another-chain")
    cases.append(_case(header=header_bytes(foreign), commit=commit_json(commit_for(foreign, chain_id=foreign.chain_id))))
    return cases


def test_every_tampered_input_is_refused_by_the_js_and_the_python_light_client(driver: Any) -> None:
    cases = _refused_cases()
    assert len(cases) > 1500
    outcomes = _run(driver, cases)
    accepted_in_js = [index for index, outcome in enumerate(outcomes) if outcome["ok"]]
    accepted_in_python = [index for index, case in enumerate(cases) if _python_accepts(case)]
    assert accepted_in_js == [] and accepted_in_python == []
    messages = {outcome["message"] for outcome in outcomes}
    assert any("more than 2/3 are needed" in message for message in messages)
    assert any("validators_hash is not the hash" in message for message in messages)
    assert any("not canonical msgpack" in message for message in messages)
    assert any("next_validators does not hash" in message for message in messages)


def test_oversized_answers_are_refused_before_any_work(driver: Any) -> None:
    from client.light_client import MAX_HEADER_BYTES, MAX_VALIDATORS

    commit = commit_json(CHAIN[TOP].commit)
    many = [f"{index:064x}" for index in range(MAX_VALIDATORS + 1)]
    cases = [
        _case(changes=[{**CHANGES[0], "header": "00" * (MAX_HEADER_BYTES + 1)}, *CHANGES[1:]]),
        _case(header=bytes(MAX_HEADER_BYTES + 1)),
        _case(changes=[{**CHANGES[0], "next_validators": many}, *CHANGES[1:]]),
        _case(commit={**commit, "signatures": commit["signatures"] * (MAX_VALIDATORS // len(commit["signatures"]) + 1)}),
    ]
    outcomes = _run(driver, cases)
    assert [outcome["ok"] for outcome in outcomes] == [False] * 4
    assert f"at most {MAX_HEADER_BYTES} bytes" in outcomes[0]["message"]
    assert f"over {MAX_HEADER_BYTES} bytes" in outcomes[1]["message"]
    assert f"at most {MAX_VALIDATORS} addresses" in outcomes[2]["message"]
    assert f"more than {MAX_VALIDATORS} signatures" in outcomes[3]["message"]


GENESIS_CHECK = """
const {genesisHash, trustGenesis} = await load("light_client.js");
const results = {hash: await genesisHash(argument.genesis)};
for (const [name, genesis] of Object.entries(argument.tampered)) {
  try {
    await trustGenesis(genesis, argument.hash);
    results[name] = "trusted";
  } catch (error) {
    results[name] = error.message;
  }
}
return results;
"""


def test_the_browser_computes_the_genesis_hash_and_refuses_any_other_genesis(driver: Any) -> None:
    document = GENESIS.to_json()
    validators = list(document["validators"])
    validators[0] = "00" * 32
    tampered = {
        "validators": {**document, "validators": sorted(validators)},
        "chain_id": {**document, "chain_id": "another-chain"},
        "params": {**document, "params": {**document["params"], "min_fee": document["params"]["min_fee"] + 1}},
        "extra key": {**document, "extra": 1},
        "unsorted validators": {**document, "validators": document["validators"][::-1]},
    }
    results = run_module_script(driver, GENESIS_CHECK,
                                {"genesis": document, "hash": GENESIS.hash.hex(), "tampered": tampered})
    assert results.pop("hash") == GENESIS.hash.hex()
    assert all(result != "trusted" for result in results.values()), results
    assert "not to the trusted" in results["validators"] and "not to the trusted" in results["params"]


PAGING = """
const {changesBelow, MAX_CHANGE_PAGES} = await load("verified_state.js");
const results = {limit: MAX_CHANGE_PAGES};
for (const mode of ["honest", "stuck", "endless", "backwards"]) {
  let calls = 0;
  globalThis.fetch = async (path) => {
    calls += 1;
    const after = Number(new URL(path, location.href).searchParams.get("after"));
    const body = mode === "honest" ? (after === 0 ? {changes: [{height: 3}], next: 3} : {changes: [{height: 6}], next: null})
      : mode === "stuck" ? {changes: [], next: after} : mode === "endless" ? {changes: [{height: after + 1}], next: after + 1}
        : {changes: [], next: after - 1};
    return new Response(JSON.stringify(body), {status: 200, headers: {"Content-Type": "application/json"}});
  };
  try {
    const changes = await changesBelow(1000000, 0);
    results[mode] = {calls, heights: changes.map((change) => change.height)};
  } catch (error) {
    results[mode] = {calls, error: error.message};
  }
}
return results;
"""


def test_the_pages_read_change_points_with_a_cursor_that_must_move_forward_and_a_page_bound(driver: Any) -> None:
    results = run_module_script(driver, PAGING, None)
    assert results["honest"] == {"calls": 2, "heights": [3, 6]}
    assert results["stuck"]["calls"] == 1 and "does not move forward" in results["stuck"]["error"]
    assert results["backwards"]["calls"] == 1 and "does not move forward" in results["backwards"]["error"]
    assert results["endless"]["calls"] == results["limit"] == 100
    assert "more than 100 pages" in results["endless"]["error"]


SIGNATURES = """
const {verifyEd25519, fromHex} = await load("verify.js");
return Promise.all(argument.map((item) => verifyEd25519(item.key, item.signature, fromHex(item.message))));
"""

SMALL_ORDER_POINTS = [
    "00" * 32, "01" + "00" * 31,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f",
]
"""libsodium's blocklist of small-order encodings (R3)."""


def test_the_browser_checks_ed25519_signatures_with_libsodium_semantics(driver: Any) -> None:
    from marketplace_tx.primitives.crypto import verify_signature

    key = set_keys(1)[0]
    message = b"marketchain/vote/v1\x00 a precommit"
    signature = key.sign(message)
    order = 2**252 + 27742317777372353535851937790883648493
    high_s = signature[:32] + (int.from_bytes(signature[32:], "little") + order).to_bytes(32, "little")
    identity = bytes.fromhex("01" + "00" * 31)
    cases = [(key.address, signature), (key.address, high_s), (key.address, bytes(64))]
    for point in SMALL_ORDER_POINTS:  # A = R = a small-order point, S = 0: "valid" for any message without the checks
        cases.append((bytes.fromhex(point), bytes.fromhex(point) + bytes(32)))
        cases.append((bytes.fromhex(point), identity + bytes(32)))
        flipped_sign = bytearray.fromhex(point)
        flipped_sign[31] ^= 0x80
        cases.append((bytes(flipped_sign), identity + bytes(32)))
    cases.append((key.address, identity + signature[32:]))  # R of small order
    argument = [{"key": public.hex(), "signature": signed.hex(), "message": message.hex()} for public, signed in cases]
    in_browser = run_module_script(driver, SIGNATURES, argument)
    in_python = [verify_signature(public, message, signed) for public, signed in cases]
    assert in_python[0] is True and not any(in_python[1:])
    assert in_browser == in_python
