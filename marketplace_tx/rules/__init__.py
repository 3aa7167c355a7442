"""The state machine: the state interface (`state`, `state_keys`, `state_tree`), one
module per marketplace concept (accounts, shops, listings, items, orders, …), the
stateless admission checks (R10) and `state_transition`, which builds, validates and
applies blocks.

Imports `primitives`, `chain` and `speedups`. Imported by the node, the mempool, the
client's local checks, consensus (proposer selection), benches and tests; never
by p2p.
"""
