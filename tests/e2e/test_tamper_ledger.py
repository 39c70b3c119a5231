"""Ledger tampering anywhere, not only in the newest chunk (issue 7): a
flipped byte in an older sealed chunk's frame or header (CRCs recomputed),
two swapped entries, a missing chunk, a signed chunk cut short. lskvd checks
the whole ledger before it answers anybody: every case is refused at start,
no read is answered while it starts, the refusal names the ledger file, the
data dir is left as it was, and the offline audit fails too."""
import re

import pytest
from etcd3.etcdrpc import rpc_pb2

import ledgerfile
from conftest import dir_state
from test_tamper_raft import audit, refusal_line, start_reading

PREFIX = b"tl/"


def make_ledger(server_factory):
    """A node whose ledger spans several sealed chunks, most of them older
    than its raft log's last snapshot (so raft replay does not reach them)."""
    s = server_factory("lskvd", extra=["--ledger-chunk-bytes", "4096", "--sig-tx-interval", "8",
                                       "--snapshot-count", "8"])
    kv = s.kv()
    for i in range(120):
        kv.Put(rpc_pb2.PutRequest(key=PREFIX + b"%03d" % i, value=b"v" * 64))
    s.stop_cleanly()
    names = ledgerfile.chunks(s.data_dir / "ledger")
    sealed = [n for n in names if n.endswith(".committed")]
    assert len(sealed) >= 4, names
    return s, sealed


def leaves_of(s, chunk):
    return [f.leaf for f in ledgerfile.frames(s.data_dir / "ledger") if f.chunk == chunk]


def check_refused(s, names, audit_fails=True):
    """Refused at start, naming one of names, with no answer and no file
    changed; the offline audit fails too unless the ledger is valid alone."""
    before = dir_state(s.data_dir)
    answers = start_reading(s)
    log = s.log_text(True)
    assert s.proc.poll() is not None, "lskvd served a tampered ledger; log:\n" + log[-2000:]
    assert s.proc.returncode != 0
    assert answers == [], "answered %d reads before refusing" % len(answers)
    why = refusal_line(s)
    assert why is not None, "no refusal line; log:\n" + log[-2000:]
    assert "ledger" in why and any(n in why for n in names), why
    assert dir_state(s.data_dir) == before, "a refused start changed files"
    if audit_fails:
        a = audit(s)
        assert a.returncode != 0, "the tampered ledger audits clean: " + a.stdout
    return why


@pytest.mark.parametrize("where", ["body", "private", "signature"])
def test_flipped_byte_in_an_older_chunk(server_factory, where):
    s, sealed = make_ledger(server_factory)
    chunk = sealed[1]
    frames = [f for f in ledgerfile.frames(s.data_dir / "ledger") if f.chunk == chunk]
    if where == "signature":
        f = [f for f in frames if f.type == 5][-1]
        pos = len(f.raw) - 8 - 200  # inside the signature payload
    else:
        f = [f for f in frames if f.type == 1][0]
        pos = 30 if where == "body" else len(f.raw) - 8 - 5  # header / sealed private part
    ledgerfile.flip(s.data_dir / "ledger", f.leaf, pos)
    check_refused(s, [chunk])


def test_flipped_byte_in_an_older_chunk_header(server_factory):
    s, sealed = make_ledger(server_factory)
    ledgerfile.flip_header(s.data_dir / "ledger", sealed[2], 24 + 5)  # inside the peaks
    check_refused(s, [sealed[2]])


def test_swapped_entries_in_an_older_chunk(server_factory):
    s, sealed = make_ledger(server_factory)
    leaves = leaves_of(s, sealed[1])
    ledgerfile.swap(s.data_dir / "ledger", leaves[1], leaves[2])
    check_refused(s, [sealed[1]])


def test_missing_chunk(server_factory):
    s, sealed = make_ledger(server_factory)
    (s.data_dir / "ledger" / sealed[1]).unlink()
    check_refused(s, [sealed[0], sealed[2], "ledger_"])


def test_signed_chunk_cut_short(server_factory):
    s, sealed = make_ledger(server_factory)
    leaves = leaves_of(s, sealed[1])
    ledgerfile.drop(s.data_dir / "ledger", leaves[-1])  # its closing signature
    check_refused(s, [sealed[1]])


def test_ledger_cut_behind_the_raft_snapshot(server_factory):
    """Every chunk after the second sealed one removed: what is left is a
    shorter ledger, valid on its own, but the raft log's
    snapshot covers entries it no longer holds. Refused from the snapshot's
    POSITION before the engine is opened, so no file changes."""
    s, sealed = make_ledger(server_factory)
    ledger = s.data_dir / "ledger"
    names = ledgerfile.chunks(ledger)
    for n in names[names.index(sealed[1]) + 1:]:
        (ledger / n).unlink()
    why = check_refused(s, ["ledger entries were lost"], audit_fails=False)
    assert "raft snapshot" in why, why


def test_untampered_ledger_starts(server_factory):
    s, _ = make_ledger(server_factory)
    s.start()
    r = s.kv().Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=b"tl0", count_only=True))
    assert r.count == 120
    assert re.search(r"ledger", s.log_text(True))
