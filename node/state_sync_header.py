"""A snapshot's header verified by the light client, and its manifest checked (PROTOCOL R37, R39).

`verify_from` asks one offering peer for the header and commit at the snapshot height
(`header_request`) and for the change points below it (`light_changes_request`, paged,
bounded by `MAX_CHANGE_POINTS` and `MAX_CHANGE_PAGES`), then verifies the header from this
node's genesis by R37, off the loop. It returns why it failed when the peer is to blame,
and None when the peer only did not answer. `manifest_problem` says why manifest bytes
are not a manifest of the snapshot asked for that folds to the verified state_root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consensus.light_client import LightClientError, VerifiedHeader, verify_header
from marketplace_tx.chain.block import decode_commit
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError, InvalidBlock
from marketplace_tx.rules.snapshots import InvalidSnapshot, check_manifest, manifest_from_map
from node.snapshot_choice import SnapshotKey
from node.state_sync_answers import (
    LIGHT_CHANGES_PAGE,
    MalformedAnswer,
    parse_changes_page,
    parse_header_answer,
)
from node.state_sync_requests import Requests

MAX_CHANGE_POINTS = 10_000
"""Change points accepted below a snapshot height; more and the serving peer is not believed."""
MAX_CHANGE_PAGES = MAX_CHANGE_POINTS // LIGHT_CHANGES_PAGE + 2
"""`light_changes` pages asked of one peer for one header (a peer paging one height at a
time would otherwise make the node ask as many times as there are heights)."""

InThread = Callable[..., Awaitable[Any]]
"""Runs a blocking function off the loop: `await in_thread(function, *arguments)`."""


@dataclass(frozen=True)
class Verified:
    """A snapshot height whose header verified by R37, with what the restore records."""

    header: VerifiedHeader
    """The verified header (its state_root is trusted)."""
    header_bytes: bytes
    """Its canonical bytes."""
    commit_bytes: bytes
    """The canonical commit that finalized it."""
    change_points: tuple[ChangePoint, ...]
    """The change points below it that were walked."""


async def _change_points(requests: Requests, peer: bytes, height: int) -> list[ChangePoint] | str | None:
    """The change points below `height` as `peer` lists them, or why not (str), or None (no answer)."""
    changes: list[ChangePoint] = []
    after = 0
    for _ in range(MAX_CHANGE_PAGES):
        body = await requests.ask(peer, "light_changes_request", {"after": after, "limit": LIGHT_CHANGES_PAGE},
                                  "light_changes", after)
        if body is None:
            return None
        try:
            page = parse_changes_page(body, after)
        except MalformedAnswer as error:
            return f"light_changes: {error}"
        changes.extend(change for change in page.changes if change.height < height)
        if len(changes) > MAX_CHANGE_POINTS:
            return f"more than {MAX_CHANGE_POINTS} change points below height {height}"
        if page.next is None or (page.changes and page.changes[-1].height >= height):
            return changes
        after = page.next
    return f"light_changes paged over more than {MAX_CHANGE_PAGES} answers"


async def verify_from(requests: Requests, genesis: Genesis, peer: bytes, height: int,
                      in_thread: InThread) -> Verified | str | None:
    """The header at `height` from `peer`, verified by R37 from `genesis`; why it failed (the
    peer is to be charged); or None (no answer, or it does not keep that header: not charged)."""
    answer = await requests.ask(peer, "header_request", {"height": height}, "header", height)
    if answer is None:
        return None
    try:
        header_answer = parse_header_answer(answer)
    except MalformedAnswer as error:
        return f"header: {error}"
    if header_answer.header is None or header_answer.commit is None:
        return None
    changes = await _change_points(requests, peer, height)
    if not isinstance(changes, list):
        return changes
    try:
        commit = decode_commit(header_answer.commit)
        header = await in_thread(verify_header, genesis, changes, header_answer.header, commit, height)
    except (LightClientError, InvalidBlock) as error:
        return str(error)
    return Verified(header, header_answer.header, header_answer.commit, tuple(changes))


def manifest_problem(raw: bytes, key: SnapshotKey, state_root: bytes) -> str | None:
    """Why `raw` is not a manifest of `key` folding to the verified `state_root` (R39), or None."""
    try:
        manifest = manifest_from_map(codec.decode(raw))
        if (manifest.height, manifest.chunk_depth) != (key.height, key.chunk_depth):
            return "it is not for the snapshot asked for"
        if manifest.state_root != state_root:
            return "its state_root is not the verified header's"
        check_manifest(manifest)
    except (CodecError, InvalidSnapshot) as error:
        return str(error)
    return None
