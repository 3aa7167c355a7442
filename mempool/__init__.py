"""The mempool: admitted transactions waiting for a block (PROTOCOL R10)."""
