"""The mempool journal (node/mempool_journal.py): format, torn and corrupt tails, bound,
atomic rewrite, and the keeper that restores, flushes and rewrites."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from marketplace_tx.primitives.errors import AdmissionError
from node.mempool_journal import (
    MAGIC,
    RECORD_HEADER,
    JournalEntry,
    JournalKeeper,
    MempoolJournal,
    decode_records,
    encode_record,
)


def entry(index: int, size: int = 100) -> JournalEntry:
    raw = (hashlib.sha256(str(index).encode()).digest() * (size // 32 + 1))[:size]
    return JournalEntry(raw, 1_700_000_000_000 + index)


def journal_at(tmp_path: Path, max_bytes: int = 1 << 20) -> MempoolJournal:
    return MempoolJournal(tmp_path / "data" / "mempool.journal", max_bytes)


def test_appended_records_load_back_in_order(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    assert journal.load() == []
    entries = [entry(index, 50 + index) for index in range(20)]
    assert journal.append(entries[:5]) == 5
    assert journal.append(entries[5:]) == 15
    journal.close()
    again = journal_at(tmp_path)
    assert again.load() == entries
    assert again.size == journal.path.stat().st_size


def test_records_encode_decode_round_trip() -> None:
    entries = [entry(index) for index in range(3)] + [JournalEntry(b"", 0)]
    data = MAGIC + b"".join(encode_record(item) for item in entries)
    assert decode_records(data) == (entries, len(data))
    assert decode_records(b"not a journal") == ([], 0)


@pytest.mark.parametrize("cut", [1, RECORD_HEADER.size - 1, RECORD_HEADER.size, RECORD_HEADER.size + 40])
def test_a_torn_tail_is_truncated_at_the_last_good_record(tmp_path: Path, cut: int) -> None:
    journal = journal_at(tmp_path)
    journal.append([entry(1), entry(2)])
    journal.close()
    good_size = journal.path.stat().st_size
    torn = encode_record(entry(3))[:cut]  # kill -9 in the middle of an append
    with journal.path.open("ab") as handle:
        handle.write(torn)
    again = journal_at(tmp_path)
    assert again.load() == [entry(1), entry(2)]
    assert journal.path.stat().st_size == good_size
    again.append([entry(4)])  # appends continue after the last good record
    again.close()
    assert journal_at(tmp_path).load() == [entry(1), entry(2), entry(4)]


def test_a_corrupt_record_ends_the_journal(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.append([entry(1), entry(2), entry(3)])
    journal.close()
    data = bytearray(journal.path.read_bytes())
    second = len(MAGIC) + len(encode_record(entry(1)))
    data[second + RECORD_HEADER.size + 10] ^= 0xFF  # a flipped bit in the second transaction
    journal.path.write_bytes(bytes(data))
    assert journal_at(tmp_path).load() == [entry(1)]
    assert journal.path.stat().st_size == second


@pytest.mark.parametrize("content", [b"", b"garbage that is no journal", MAGIC[:3]])
def test_a_file_without_the_header_starts_an_empty_journal(tmp_path: Path, content: bytes) -> None:
    journal = journal_at(tmp_path)
    journal.path.parent.mkdir(parents=True)
    journal.path.write_bytes(content)
    assert journal.load() == []
    journal.append([entry(1)])
    journal.close()
    assert journal_at(tmp_path).load() == [entry(1)]


def test_a_length_beyond_any_transaction_is_corrupt() -> None:
    header = RECORD_HEADER.pack(1 << 30, 0, 0)
    assert decode_records(MAGIC + header + b"x" * 10) == ([], len(MAGIC))


def test_the_file_never_exceeds_its_bound(tmp_path: Path) -> None:
    record_size = len(encode_record(entry(0)))
    journal = journal_at(tmp_path, max_bytes=len(MAGIC) + 3 * record_size)
    assert journal.append([entry(index) for index in range(5)]) == 3
    assert journal.dropped == 2 and journal.full
    assert journal.path.stat().st_size <= journal.max_bytes
    assert journal.rewrite([entry(7), entry(8), entry(9), entry(10)]) == 3
    assert not journal.full
    assert journal.path.stat().st_size <= journal.max_bytes
    assert journal_at(tmp_path).load() == [entry(7), entry(8), entry(9)]


def test_a_rewrite_replaces_the_file_atomically(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.append([entry(index) for index in range(10)])
    assert journal.rewrite([entry(4), entry(5)]) == 2
    assert not journal.temporary_path.exists()
    assert journal.size == journal.path.stat().st_size
    journal.append([entry(11)])  # appends go to the new file
    journal.close()
    assert journal_at(tmp_path).load() == [entry(4), entry(5), entry(11)]


def test_a_crash_before_the_rename_keeps_the_old_journal(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.append([entry(1)])
    journal.close()
    journal.temporary_path.write_bytes(MAGIC + encode_record(entry(2))[:7])  # left by a crash mid-rewrite
    assert journal_at(tmp_path).load() == [entry(1)]


# --- the keeper ----------------------------------------------------------------------------


class FakeMempool:
    """Admits every raw not in `refuse`, remembers it as pending."""

    def __init__(self, refuse: dict[bytes, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.pending: list[JournalEntry] = []

    async def readmit(self, raws: Sequence[bytes], admitted_ms: Sequence[int]) -> list[object]:
        outcomes: list[object] = []
        for raw, admitted in zip(raws, admitted_ms, strict=True):
            if raw in self.refuse:
                outcomes.append(AdmissionError(self.refuse[raw], "no"))
            else:
                self.pending.append(JournalEntry(raw, admitted))
                outcomes.append(raw)
        return outcomes


def keeper_for(journal: MempoolJournal, mempool: FakeMempool, now_ms: int, **options: float) -> JournalKeeper:
    return JournalKeeper(journal, lambda: list(mempool.pending), lambda: now_ms, registry=CollectorRegistry(),
                         rewrite_interval_s=options.get("rewrite", 60.0), flush_interval_s=options.get("flush", 0.01))


def test_restore_readmits_drops_the_invalid_and_expired_and_rewrites(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.append([entry(1), entry(2), entry(3), JournalEntry(b"old", 0)])
    journal.close()
    mempool = FakeMempool(refuse={entry(2).raw: "duplicate"})
    keeper = keeper_for(journal_at(tmp_path), mempool, now_ms=entry(3).admitted_ms + 1000)

    async def scenario() -> None:
        counts = await keeper.restore(mempool.readmit, ttl_ms=600_000)
        assert (counts.readmitted, counts.expired, counts.refused) == (2, 1, {"duplicate": 1})
        await keeper.stop()

    asyncio.run(scenario())
    assert [item.raw for item in mempool.pending] == [entry(1).raw, entry(3).raw]
    assert mempool.pending[0].admitted_ms == entry(1).admitted_ms, "the TTL still counts from the first admission"
    assert journal_at(tmp_path).load() == mempool.pending
    assert keeper.readmitted._value.get() == 2


def test_admitted_transactions_reach_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    mempool = FakeMempool()
    keeper = keeper_for(journal_at(tmp_path), mempool, now_ms=5)

    async def scenario() -> None:
        await keeper.restore(mempool.readmit, ttl_ms=600_000)
        keeper.start()
        keeper.record([b"tx-a", b"tx-b"])
        await asyncio.sleep(0.2)
        assert journal_at(tmp_path).load() == [JournalEntry(b"tx-a", 5), JournalEntry(b"tx-b", 5)]
        mempool.pending = [JournalEntry(b"tx-b", 5)]  # tx-a became final
        await keeper.stop()

    asyncio.run(scenario())
    assert journal_at(tmp_path).load() == [JournalEntry(b"tx-b", 5)], "a clean stop keeps only what is pending"


def test_the_keeper_rewrites_periodically_and_when_full(tmp_path: Path) -> None:
    mempool = FakeMempool()
    record_size = len(encode_record(JournalEntry(b"x" * 10, 0)))
    keeper = keeper_for(MempoolJournal(tmp_path / "j", len(MAGIC) + 2 * record_size), mempool, now_ms=0,
                        rewrite=3600.0)

    async def scenario() -> None:
        await keeper.restore(mempool.readmit, ttl_ms=600_000)
        keeper.start()
        keeper.record([bytes([65 + index]) * 10 for index in range(3)])  # one too many
        await asyncio.sleep(0.1)
        mempool.pending = [JournalEntry(b"B" * 10, 0)]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not keeper.journal.full:
                break
        await keeper.stop()

    asyncio.run(scenario())
    assert MempoolJournal(tmp_path / "j", 1 << 20).load() == [JournalEntry(b"B" * 10, 0)]
    assert keeper.journal.dropped == 1


def test_a_mempool_larger_than_the_bound_waits_for_the_periodic_rewrite(tmp_path: Path) -> None:
    """When the pending transactions alone overflow the file, a full file is not rewritten
    every flush (that would write the whole bound again and again)."""
    record_size = len(encode_record(JournalEntry(b"x" * 10, 0)))
    journal = MempoolJournal(tmp_path / "j", len(MAGIC) + 2 * record_size)
    mempool = FakeMempool()
    mempool.pending = [JournalEntry(bytes([65 + index]) * 10, 0) for index in range(3)]
    keeper = keeper_for(journal, mempool, now_ms=0, rewrite=3600.0)
    rewrites = []
    original = journal.rewrite

    def counting_rewrite(entries):  # type: ignore[no-untyped-def]
        rewrites.append(1)
        return original(entries)

    journal.rewrite = counting_rewrite  # type: ignore[method-assign]

    async def scenario() -> None:
        await keeper.rewrite()
        assert journal.overflowed
        keeper.start()
        keeper.record([b"Z" * 10])
        await asyncio.sleep(0.2)
        assert journal.full and len(rewrites) == 1
        await keeper.stop()

    asyncio.run(scenario())
    assert len(rewrites) == 2  # the one at stop


def test_a_real_pipeline_journals_what_it_admits_and_readmits_it_in_a_new_mempool(tmp_path: Path) -> None:
    """AdmissionPipeline → JournalKeeper → file → a fresh pipeline's `readmit` (R10 again):
    the pending transactions come back with their admission times; the final one does not."""
    from tests.unit.mempool.test_mempool import ALICE, BOB, transfer
    from tests.unit.node.test_admission_pipeline import Harness

    first = Harness()
    keeper = JournalKeeper(journal_at(tmp_path), lambda: [], lambda: 1_000, rewrite_interval_s=3600,
                           flush_interval_s=0.01, registry=CollectorRegistry())
    first.pipeline.on_admitted = keeper.record
    waiting, final = transfer(ALICE, 1), transfer(BOB, 0)

    async def admit_and_flush() -> None:
        first.pipeline.submit(waiting.raw)
        await first.pipeline.submit_many([final.raw, b"not a transaction"])
        await keeper.flush()

    asyncio.run(admit_and_flush())
    first.close()
    assert [item.raw for item in journal_at(tmp_path).load()] == [waiting.raw, final.raw]

    second = Harness()
    second.ledger.committed.add(final.hash)  # final meanwhile
    restarted = JournalKeeper(journal_at(tmp_path), lambda: [], lambda: 5_000, rewrite_interval_s=3600,
                              registry=CollectorRegistry())

    async def restore() -> Any:
        return await restarted.restore(second.pipeline.readmit, ttl_ms=600_000)

    counts = asyncio.run(restore())
    second.close()
    assert (counts.readmitted, counts.expired, counts.refused) == (1, 0, {"duplicate": 1})
    assert [(tx.hash, admitted_ms) for tx, admitted_ms in second.mempool.pending()] == [(waiting.hash, 1_000)]
    assert second.metrics.admitted.counts["journal"] == 1
    assert second.sent == [] and second.woken == 0, "nothing is gossiped and consensus is not woken before it runs"
