"""The pure core of marketchain: encoding, crypto, transactions, blocks and the state machine.

Nothing in this package performs I/O, reads a clock or draws randomness: the same
inputs always give the same bytes, hashes and results (STYLE.md, architecture).
Nothing runs at import time beyond building constants (no thread, no environment read).

Its layers, each importing only the ones above it:

- `primitives/`: canonical encoding, hashes and signatures, Merkle trees, error codes,
  encoding limits. Anyone may import them, p2p included.
- `chain/`: the chain's types: transactions, blocks, headers, commits, receipts,
  genesis, parameters, roles. For whoever handles transactions and blocks
  (consensus, mempool, node, client); not p2p.
- `rules/`: the state machine: the state interface, one module per concept, admission's
  stateless checks (R10) and `state_transition` (build, validate and apply a block).
  For the node, the mempool, the client's local checks, benches and tests.
- `speedups`: every speed trick, each standing for a plain version kept with its
  concept, and tested against it. Imports only `primitives.errors` and
  `primitives.limits`, so any layer may use it.
"""
