"""The chunk fetcher's bounds and routing (node/chunk_fetcher.py, PROTOCOL R39): slots, the
byte budget of received chunks, re-routing on timeout, unsolicited answers, bad peers."""

from __future__ import annotations

from node.chunk_fetcher import PENDING_BYTES_PER_FETCHER, Arrival, ChunkFetcher

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32
MIB = 1 << 20


def test_at_most_fetchers_chunks_are_in_flight_waiting_or_written() -> None:
    fetcher = ChunkFetcher(range(10), [A, B, C], fetchers=2, timeout_s=10)
    first = fetcher.next_requests(0.0)
    assert len(first) == 2 and first[0][1] != first[1][1]  # spread over the peers
    assert fetcher.next_requests(0.0) == []  # both slots taken
    index, peer = first[0]
    assert fetcher.arrived(peer, index, b"x") is Arrival.ACCEPTED
    assert fetcher.next_requests(0.0) == []  # received but not written: still its slot
    received = fetcher.take()
    assert received is not None and received.index == index
    fetcher.written(index)
    assert len(fetcher.next_requests(0.0)) == 1


def test_received_chunks_wait_within_the_byte_budget() -> None:
    fetcher = ChunkFetcher(range(6), [A, B], fetchers=3, timeout_s=10)
    assert fetcher.budget_bytes == 3 * PENDING_BYTES_PER_FETCHER
    requests = dict(fetcher.next_requests(0.0))
    assert sorted(requests) == [0, 1, 2]
    assert fetcher.arrived(requests[0], 0, bytes(2 * MIB)) is Arrival.ACCEPTED
    assert fetcher.arrived(requests[1], 1, bytes(2 * MIB)) is Arrival.NO_ROOM  # 4 MiB > 3 MiB
    assert fetcher.waiting_bytes == 2 * MIB
    assert fetcher.arrived(requests[2], 2, bytes(MIB)) is Arrival.ACCEPTED
    assert fetcher.waiting_bytes == 3 * MIB
    assert fetcher.next_requests(0.0) == []  # the budget is spent: nothing more is asked
    for _ in range(2):
        received = fetcher.take()
        assert received is not None
        fetcher.written(received.index)
    assert fetcher.waiting_bytes == 0
    assert 1 in dict(fetcher.next_requests(0.0))  # the chunk that found no room is asked again


def test_one_large_chunk_is_always_let_in_when_nothing_waits() -> None:
    fetcher = ChunkFetcher(range(2), [A], fetchers=1, timeout_s=10)
    ((index, peer),) = fetcher.next_requests(0.0)
    assert fetcher.arrived(peer, index, bytes(4 * MIB)) is Arrival.ACCEPTED  # R39 allows 4 MiB


def test_an_answer_never_asked_of_that_peer_is_unsolicited() -> None:
    fetcher = ChunkFetcher(range(4), [A], fetchers=4, timeout_s=10)
    fetcher.next_requests(0.0)
    assert fetcher.arrived(B, 0, b"x") is Arrival.UNSOLICITED
    assert fetcher.arrived(A, 9, b"x") is Arrival.UNSOLICITED
    assert fetcher.waiting_bytes == 0


def test_a_silent_peer_is_reported_and_the_chunk_asked_elsewhere() -> None:
    fetcher = ChunkFetcher([0], [A, B], fetchers=1, timeout_s=5)
    ((index, first),) = fetcher.next_requests(0.0)
    assert fetcher.expired(4.0) == []
    assert fetcher.expired(5.0) == [(index, first)]
    ((again, second),) = fetcher.next_requests(5.0)
    assert again == index and second != first
    assert fetcher.arrived(first, index, b"late") is Arrival.ACCEPTED  # asked before: a late answer counts
    assert fetcher.arrived(second, index, b"x") is Arrival.DUPLICATE


def test_bad_chunks_from_two_peers_say_drop_the_manifest() -> None:
    fetcher = ChunkFetcher(range(4), [A, B, C], fetchers=3, timeout_s=10)
    requests = fetcher.next_requests(0.0)
    by_peer = {peer: index for index, peer in requests}
    assert fetcher.arrived(A, by_peer[A], b"bad") is Arrival.ACCEPTED
    fetcher.take()
    assert fetcher.bad(by_peer[A], A) is False
    assert A not in fetcher.peers
    assert all(peer != A for _, peer in fetcher.next_requests(0.0))
    fetcher.arrived(B, by_peer[B], b"bad")
    fetcher.take()
    assert fetcher.bad(by_peer[B], B) is True


def test_no_peer_left_is_stuck() -> None:
    fetcher = ChunkFetcher(range(2), [A], fetchers=2, timeout_s=10)
    fetcher.next_requests(0.0)
    fetcher.peer_gone(A)
    assert fetcher.stuck and fetcher.next_requests(0.0) == []
