"""Chain types: transactions, blocks, headers, commits, receipts, genesis and chain parameters."""
