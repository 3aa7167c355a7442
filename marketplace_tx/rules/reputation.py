"""Reputation of shops and merchant addresses, kept by the state machine (PROTOCOL R20).

The trust score (0..1000) is an integer formula with priors, so that a shop with a
handful of orders is neither perfect nor ruined (docs/marketplace.md):

    rating      = (rating_sum × 100 + 5 × 300) // (rating_count + 5)          # stars ×100, prior 5 × 3.00
    fulfilment  = (orders_completed + 1) × 1000 // (orders_completed + orders_refunded + orders_expired + 2)
    disputes    = (disputes_won + 1) × 1000 // (disputes_won + disputes_lost + 1)
    trust_score = (rating × 600 // 500 + fulfilment × 300 // 1000 + disputes × 100 // 1000)

rating weighs 600, fulfilment 300 and disputes 100; each term is at most its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.primitives.limits import UINT64_MAX
from marketplace_tx.rules.records import load_record, store_record
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import merchant_reputation_key, shop_reputation_key
from marketplace_tx.speedups import evolve


@dataclass(frozen=True)
class Reputation:
    """Counters of one shop or one merchant address (R20), with sales stats."""

    rating_count: int = 0
    """Reviews received."""
    rating_sum: int = 0
    """Sum of their ratings (1..5 each)."""
    avg_rating_x100: int = 0
    """rating_sum × 100 // rating_count (0 without reviews)."""
    orders_placed: int = 0
    """Orders ever placed."""
    orders_completed: int = 0
    """Orders completed (by the buyer or by deadline)."""
    orders_refunded: int = 0
    """Orders ended `refunded`."""
    orders_expired: int = 0
    """Orders ended `expired` (merchant did not accept or ship in time)."""
    disputes_won: int = 0
    """Resolutions the merchant won: 2 × buyer_amount ≤ escrow before the fee."""
    disputes_lost: int = 0
    """Resolutions the merchant lost: 2 × buyer_amount > escrow before the fee."""
    units_sold: int = 0
    """Units of completed orders."""
    revenue: int = 0
    """µMKT paid out to the merchant."""
    trust_score: int = 0
    """0..1000, from the formula in this module's docstring."""


def trust_score(reputation: Reputation) -> int:
    """The documented integer trust formula."""
    rating = (reputation.rating_sum * 100 + 5 * 300) // (reputation.rating_count + 5)
    ended = reputation.orders_completed + reputation.orders_refunded + reputation.orders_expired
    fulfilment = (reputation.orders_completed + 1) * 1000 // (ended + 2)
    disputes = (reputation.disputes_won + 1) * 1000 // (reputation.disputes_won + reputation.disputes_lost + 1)
    return rating * 600 // 500 + fulfilment * 300 // 1000 + disputes * 100 // 1000


def load_reputation(state: State, key: bytes) -> Reputation:
    """The reputation under `key` (all zeros, score of the priors, if never written)."""
    reputation = load_record(state, key, Reputation)
    if reputation is None:
        reputation = Reputation()
        return evolve(reputation, trust_score=trust_score(reputation))
    return reputation


def shop_reputation(state: State, shop_id: bytes) -> Reputation:
    """A shop's reputation."""
    return load_reputation(state, shop_reputation_key(shop_id))


def merchant_reputation(state: State, address: bytes) -> Reputation:
    """A merchant address's reputation."""
    return load_reputation(state, merchant_reputation_key(address))


def _bump(reputation: Reputation, counters: dict[str, int]) -> Reputation:
    values = {name: min(getattr(reputation, name) + amount, UINT64_MAX) for name, amount in counters.items()}
    updated = evolve(reputation, **values)
    average = updated.rating_sum * 100 // updated.rating_count if updated.rating_count else 0
    updated = evolve(updated, avg_rating_x100=average)
    return evolve(updated, trust_score=trust_score(updated))


def record_outcome(state: State, shop_id: bytes, merchant: bytes, **counters: int) -> None:
    """Add to the counters of both the shop and its merchant (R20)."""
    for key in (shop_reputation_key(shop_id), merchant_reputation_key(merchant)):
        store_record(state, key, _bump(load_reputation(state, key), counters))
