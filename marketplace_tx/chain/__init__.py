"""Chain types: transactions, blocks, headers, commits, receipts, genesis, chain
parameters and account roles, with their canonical maps and strict decoders.

Types only: they import `primitives` (and `speedups`), never `rules`. Anyone who handles
transactions and blocks may import them (consensus, mempool, node, client); p2p does not.
"""
