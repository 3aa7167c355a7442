"""Peer-to-peer transport (PROTOCOL §8): framing, authenticated encryption, gossip.

Knows message kinds, not their meaning (STYLE.md): it may import only
`marketplace_tx.primitives.codec`, `.crypto` and `.errors`. The node uses `PeerManager`;
docs/p2p.md describes the handshake, the cipher suite and the peer policies.

| file | concept |
| --- | --- |
| `framing.py` | 4-byte big-endian length + payload, ≤ 8 MiB (R31) |
| `handshake.py` | hellos, X25519 key agreement, signed proofs, session keys (R31) |
| `channel.py` | XSalsa20-Poly1305 frames with per-direction counter nonces |
| `messages.py` | the `{body, kind}` envelope and the kinds of R32 |
| `peer.py` | one connection: queues, rate limit, idle timeout, ping |
| `peer_set.py` | connected peers, dedup, inbound limit |
| `dialer.py`, `backoff.py` | persistent and exchanged peers, exponential backoff with jitter |
| `pex.py` | peer exchange: the address book and what is shared |
| `scoring.py`, `ratelimit.py` | scores, bans, token buckets |
| `seen.py` | the gossip seen-cache: nothing delivered or relayed twice |
| `peer_manager.py` | the public API: `PeerManager` |
"""

from p2p.config import PeerManagerConfig
from p2p.peer import PeerInfo
from p2p.peer_manager import PeerManager

__all__ = ["PeerInfo", "PeerManager", "PeerManagerConfig"]
