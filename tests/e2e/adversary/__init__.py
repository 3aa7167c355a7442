"""The adversary harness (issue 13): attacks on a real 4-validator testnet, one test each.

- attacker.py: `AttackerPeer`, a peer that speaks the real handshake (p2p/handshake.py)
  with a fresh node key from a chosen loopback source address (127.x.y.z), then sends
  any message, raw frame or garbage, and may stop reading its socket;
- attacks.py: one coroutine per attack of the issue (block_request amplification,
  future-height proposals, fake evidence, slot exhaustion, never-ready transactions,
  garbage frames, peer-exchange poisoning, slowloris HTTP, a false height claim);
- measure.py: the three conditions every attack is held to: every honest node's RSS
  grows by less than 64 MiB, honest transfers keep becoming final (p95 submit→final
  < 3 s), and the attacker is disconnected and refused when it comes back.

bench/under_attack.py reuses the same attacks for the "under attack" row of `make bench`.
"""
