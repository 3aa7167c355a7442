"""The core's reading of amounts (R6) and of `--param NAME=VALUE` assignments (§9), shared by
the client's and the node's commands; the CLI's own refusals are tested in tests/unit/client."""

from __future__ import annotations

import pytest

from marketplace_tx.chain.params import MalformedAssignment, Params, params_from_assignments
from marketplace_tx.primitives.amounts import AmbiguousAmount, format_amount, parse_money


@pytest.mark.parametrize(("text", "micro"), [
    ("12MKT", 12_000_000), ("12.5 mkt", 12_500_000), ("1500µMKT", 1500), ("1_500umkt", 1500), ("0", 0),
])
def test_explicit_amounts_are_read(text: str, micro: int) -> None:
    assert parse_money(text) == micro


def test_bare_numbers_and_fractions_of_a_micro_are_refused() -> None:
    with pytest.raises(AmbiguousAmount, match=r"^12 is ambiguous: write 12MKT \(12 MKT\) or 12µMKT \(0.000012 MKT\)$"):
        parse_money("12")
    with pytest.raises(AmbiguousAmount, match="has no unit"):
        parse_money("1.5")
    with pytest.raises(ValueError, match="not a whole number of µMKT"):
        parse_money("0.0000001MKT")
    with pytest.raises(ValueError, match="is not an amount"):
        parse_money("twelve")


def test_amounts_are_shown_in_mkt_and_micro() -> None:
    assert format_amount(1_234_500_000) == "1,234.5 MKT (1234500000 µMKT)"
    assert format_amount(0) == "0 MKT (0 µMKT)"


def test_param_assignments_override_the_defaults() -> None:
    assert params_from_assignments([" min_fee = 7 "]) == Params().with_overrides({"min_fee": "7"})
    with pytest.raises(MalformedAssignment, match="write NAME=VALUE"):
        params_from_assignments(["min_fee=1", "min_fee"])
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        params_from_assignments(["nope=1"])
