"""Consensus among the authorities: votes, commits and Tendermint (PROTOCOL §7, R24–R29).

Pure like `marketplace_tx`: no I/O, clocks or randomness. `consensus.tendermint.step`
is the Tendermint core as a state machine, `step(state, event) -> (state, actions)`;
`consensus.vote`, `consensus.proposal` and `consensus.commit` hold the signed
messages and commit rules. See docs/consensus.md.
"""
