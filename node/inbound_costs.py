"""What a rejected consensus message costs the peer that sent it (PROTOCOL R32).

Every proposal, vote or evidence item a peer sends is judged before the consensus
core sees it (node/consensus_intake.py, node/evidence_intake.py); one that is
rejected lowers the sender's score (`PeerActions.penalize`) in proportion to the work
it made this node do. A peer starts at 100 and is disconnected and banned below 0
(p2p/config.py), and regains 0.1 a second: a peer that floods junk is banned after a
handful of messages that cost a signature check, or a few hundred that cost nothing.

Messages an honest peer may send in good faith (a late vote of a past height, a copy
over a full buffer, evidence that a block has just made stale) cost nothing or little.
"""

from __future__ import annotations

MALFORMED_COST = 20.0
"""A body that is not the message's wire shape (node/consensus_messages.py), or of
another chain: found without any state or signature work, but never honest."""

BAD_SIGNATURE_COST = 40.0
"""A signature that does not verify (an Ed25519 check done for nothing): three ban a peer."""

INVALID_BLOCK_COST = 50.0
"""A proposal whose block does not decode or does not match its hash: the block was
decoded and executed for nothing."""

NOT_A_VALIDATOR_COST = 5.0
"""A vote of a signer outside the height's validator set (R25): one set lookup, but an
honest peer relays only votes it verified against the same set."""

BEYOND_WINDOW_COST = 0.05
"""A message for a height beyond the future window (node/future_messages.py) while this
node is syncing (a peer proved it is ahead), charged once per new highest such height a
peer names: an honest peer ahead of a lagging node pays about one charge per block, far
below the 0.1 a second a score regains."""

UNPROVEN_HEIGHT_COST = 0.5
"""A message for a height beyond the future window while this node is not syncing: no
peer proved the chain is that far ahead (an honest peer that far ahead announces its
height first), so every such message costs a little: 200 ban a peer."""

EVIDENCE_CHECK_COST = 1.0
"""Charged before the two signatures of an evidence item are checked (R27): an honest
peer relays an item once per equivocation, a flood pays for every check up front."""

STALE_EVIDENCE_COST = 2.0
"""Evidence against a signer that is not (or no longer) a validator, already punished,
or of a height not below the current one: state reads only, and an honest peer may
relay an item a block has just made stale."""
