"""Every speed trick of the pure core, in one place (STYLE.md: tricks live in a
separate, clearly named place). Each gives exactly what a plain, readable version
gives; the plain version lives with its concept and the equivalence tests
(tests/unit/marketplace_tx/test_speedups_*.py) check trick == plain on random inputs.

Index (trick -> the plain version it stands for -> who uses the trick):

- `canonical_form`: exact-type dispatch with plain items checked inline
  -> `codec.canonical_form` -> `codec.encode` (R1).
- `check_canonical_structure`: scalar items accepted without a call each
  -> `codec.check_canonical_structure` -> `codec.decode` (R2).
- `decode_trusted`: no canonical re-check of bytes this node wrote itself
  -> `codec.decode` -> the state readers in `rules/`.
- `merkle_root_of_hashes`: the RFC 6962 root built level by level, no recursion
  -> `merkle.subtree_root` -> `merkle.merkle_root` (R7).
- `unsigned_bytes_from_signed`: a transaction's unsigned map cut out of its signed
  bytes -> `codec.encode(tx.unsigned_map())` -> `Transaction.signing_bytes` (R8).
- `evolve`: a record copy without `__init__` -> `dataclasses.replace` -> the rules.
- `valid_signatures`: many signatures verified on a few threads, created lazily on
  the first large batch -> `[tx.has_valid_signature() for tx in txs]` -> the state
  transition (R3, R8).

Imports: msgpack, the standard library and `primitives.errors` / `primitives.limits`
only (no other module of the core), so that every layer, the primitives included,
may use it. Nothing here runs at import time beyond constants: no thread, no
environment read.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack

from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.primitives.limits import INT64_MIN, MAX_NESTING_DEPTH, UINT64_MAX

if TYPE_CHECKING:
    from marketplace_tx.chain.transaction import Transaction

# --------------------------------------------------------------------------- canonical encoding (R1)

_PLAIN_TYPES = frozenset({bytes, str, bool, type(None)})
"""Exact types `canonical_form` passes through unchanged (ints need a range check)."""


def canonical_form(value: Any, depth: int = 0) -> Any:
    """Exactly what `codec.canonical_form(value, depth)` returns or raises, faster.

    Exact types first (the hot path: state records and transactions), then the
    general isinstance checks for subclasses and rarer types. Maps and arrays check
    their plain items inline instead of calling per item, and a map whose keys are
    already sorted and whose items need no change is handed back as it is.
    """
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    kind = type(value)
    if kind is bytes or kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if value < INT64_MIN or value > UINT64_MAX:
            raise CodecError("malformed", f"integer {value} out of range")
        return value
    if kind is dict:
        return _canonical_map(value, depth)
    if kind is list or kind is tuple:
        return _canonical_array(value, depth)
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, int):
        return canonical_form(int(value), depth)
    if isinstance(value, dict):
        return canonical_form(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return canonical_form(list(value), depth)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise CodecError("malformed", f"type {type(value).__name__} cannot be encoded")


def _canonical_map(value: dict, depth: int) -> dict:
    keys = list(value)
    for key in keys:
        if type(key) is not str:
            raise CodecError("malformed", f"map key {key!r} is not text")
    ordered = sorted(keys)
    if depth >= MAX_NESTING_DEPTH:
        return {key: canonical_form(value[key], depth + 1) for key in ordered}
    unchanged = ordered == keys
    result = {}
    for key in ordered:
        item = value[key]
        kind = type(item)
        if kind is int:
            if item < INT64_MIN or item > UINT64_MAX:
                raise CodecError("malformed", f"integer {item} out of range")
        elif kind not in _PLAIN_TYPES:
            converted = canonical_form(item, depth + 1)
            if converted is not item:
                unchanged = False
                item = converted
        result[key] = item
    return value if unchanged else result


def _canonical_array(value: list | tuple, depth: int) -> list:
    if depth >= MAX_NESTING_DEPTH:
        return [canonical_form(item, depth + 1) for item in value]
    result = []
    append = result.append
    for item in value:
        kind = type(item)
        if kind is int:
            if item < INT64_MIN or item > UINT64_MAX:
                raise CodecError("malformed", f"integer {item} out of range")
        elif kind not in _PLAIN_TYPES:
            item = canonical_form(item, depth + 1)
        append(item)
    return result


# --------------------------------------------------------------------------- canonical decoding (R2)

_SCALAR_TYPES = frozenset({bytes, str, int, bool, type(None)})
"""Exact types msgpack decodes that `check_canonical_structure` accepts as they are."""


def check_canonical_structure(value: Any, depth: int = 0) -> None:
    """Exactly what `codec.check_canonical_structure(value, depth)` raises (or not),
    faster: items of a plain scalar type are accepted inline, without a call each."""
    if depth > MAX_NESTING_DEPTH:
        raise CodecError("malformed", "structure nested too deeply")
    if isinstance(value, float):
        raise CodecError("malformed", "floats are not allowed")
    inline = depth < MAX_NESTING_DEPTH
    if isinstance(value, dict):
        previous: str | None = None
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError("malformed", "map keys must be text")
            if previous is not None and key <= previous:
                raise CodecError("malformed", f"map key {key!r} is not in ascending order")
            previous = key
            if not (inline and type(item) in _SCALAR_TYPES):
                check_canonical_structure(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if not (inline and type(item) in _SCALAR_TYPES):
                check_canonical_structure(item, depth + 1)
    elif not (value is None or isinstance(value, (str, bytes, int))):
        # msgpack decodes its Timestamp extension (type −1) without calling ext_hook.
        raise CodecError("malformed", f"type {type(value).__name__} is not allowed")


def decode_trusted(data: bytes) -> Any:
    """`codec.decode(data)` for bytes this node wrote itself with `codec.encode`
    (committed state, its own indexes), without the canonical re-check.

    Never use it on bytes from a peer or a client: it accepts non-canonical input.
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --------------------------------------------------------------------------- Merkle root (R7)


def merkle_root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """Exactly `merkle.subtree_root(hashes)` (one or more leaf hashes), without recursion.

    Splitting at the largest power of two below n makes every left subtree perfect, so
    the tree is the one built by hashing neighbours pairwise, level after level, and
    carrying a last unpaired node up unchanged.
    """
    sha256 = hashlib.sha256
    level: Sequence[bytes] = hashes
    while len(level) > 1:
        paired = [sha256(b"\x01" + level[index] + level[index + 1]).digest() for index in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# --------------------------------------------------------------------------- transaction signing bytes (R8)

_SIG_ENTRY_HEAD = b"\xa3sig\xc4\x40"
"""Canonical `"sig"` key and the bin8 header of its 64 bytes: the entry is 70 bytes."""
_TYPE_KEY_BYTES = 5
"""The canonical `"type"` key: a fixstr header and 4 bytes."""


def unsigned_bytes_from_signed(raw: bytes, sig: bytes, tx_type: str) -> bytes | None:
    """`codec.encode(tx.unsigned_map())`, cut out of `raw`, or None if `raw` has not
    the expected shape.

    Only valid when `raw` is known to be the canonical encoding of the signed map
    whose `sig` and `type` are `sig` and `tx_type` (`Transaction.raw_matches_fields`).
    The canonical map's entries are sorted (…, sender, sig, type), so the unsigned
    map's bytes are `raw` with one entry fewer in the fixmap header and the 70-byte
    `sig` entry before the last (`type`) cut out.
    """
    cut = len(raw) - _TYPE_KEY_BYTES - len(msgpack.packb(tx_type)) - 70
    if raw[0] == 0x87 and raw[cut:cut + 6] == _SIG_ENTRY_HEAD and raw[cut + 6:cut + 70] == sig:
        return b"\x86" + raw[1:cut] + raw[cut + 70:]
    return None


# --------------------------------------------------------------------------- record copies

RecordType = TypeVar("RecordType")


def evolve(record: RecordType, **changes: Any) -> RecordType:
    """`dataclasses.replace(record, **changes)` for a plain frozen dataclass record
    (no `__post_init__`, no `init=False` field, changes naming existing fields), made
    without calling `__init__`."""
    copy = object.__new__(type(record))
    copy.__dict__.update(record.__dict__)
    copy.__dict__.update(changes)
    return copy


# --------------------------------------------------------------------------- signatures on threads (R3, R8)

PARALLEL_FROM = 128
"""Batches smaller than this are verified in the calling thread."""
CHUNK = 64
"""Signatures one thread verifies per task."""
MAX_WORKERS = 4
"""At most this many threads (one per core)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def worker_count() -> int:
    """Threads `valid_signatures` uses for a large batch: one per core, at most `MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _executor() -> ThreadPoolExecutor:
    """The signature thread pool, created on first use (never at import time)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=worker_count(), thread_name_prefix="signatures")
        return _pool


def _verify_chunk(transactions: Sequence[Transaction]) -> list[bool]:
    return [tx.has_valid_signature() for tx in transactions]


def valid_signatures(transactions: Sequence[Transaction]) -> list[bool]:
    """Exactly `[tx.has_valid_signature() for tx in transactions]`, in parallel when it pays.

    A large batch is spread over a few threads, which run in parallel because
    libsodium's verification releases the GIL. Results are the same whatever the
    thread count or timing, so the state machine stays deterministic.
    """
    if len(transactions) < PARALLEL_FROM or worker_count() == 1:
        return _verify_chunk(transactions)
    chunks = [transactions[start:start + CHUNK] for start in range(0, len(transactions), CHUNK)]
    return [valid for result in _executor().map(_verify_chunk, chunks) for valid in result]
