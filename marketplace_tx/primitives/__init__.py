"""Primitives that every layer may import, p2p included: canonical encoding (`codec`),
hashes and signatures (`crypto`), Merkle trees and proofs (`merkle`), error codes
(`errors`) and the encoding's limits (`limits`).

They know nothing of transactions, blocks or rules: nothing here imports `chain` or
`rules` (only `marketplace_tx.speedups`, for the fast twins of the codec and Merkle root).
"""
