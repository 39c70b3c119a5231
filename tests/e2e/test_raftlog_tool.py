"""The raft-log tamper layer (raftlog.py) against data dirs lskvd made: it
parses them as libraft does, a rewrite without changes is byte-identical, and
rewrites that keep the log's contents load in libraft (lskvd starts and
serves every key). The tamper tests rely on this: when they see a refusal, it
is lskv's check, not a broken file."""
import os
import random

import pytest

from conftest import lskvd_only, rpc_pb2
import raftlog
from raftlog import RaftLog

pytestmark = lskvd_only
N_KEYS = 25


def files(d):
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out


def make_dir(server_factory, stop="term", snapshot_count=10, n=N_KEYS):
    s = server_factory("lskvd", extra=["--snapshot-count", str(snapshot_count)])
    kv = s.kv()
    for i in range(n):
        kv.Put(rpc_pb2.PutRequest(key=b"k%03d" % i, value=b"v%03d" % i), timeout=20)
    if stop == "kill":
        s.kill()
    else:
        s.stop_cleanly()
    return s


def assert_serves_all(s, n=N_KEYS):
    s.start()
    kv = s.kv()
    for i in range(n):
        r = kv.Range(rpc_pb2.RangeRequest(key=b"k%03d" % i), timeout=20)
        assert [(x.key, x.value) for x in r.kvs] == [(b"k%03d" % i, b"v%03d" % i)]
    s.stop_cleanly()


def test_crc_is_libraft_s():
    rnd = random.Random(7)
    for _ in range(50):
        b = bytes(rnd.randrange(256) for _ in range(rnd.randrange(100)))
        init = rnd.randrange(1 << 32)
        assert raftlog.crc32(b, init) == raftlog.crc32_reference(b, init)
    # A value worked out by hand from the table's first entries: one 0x01 byte
    # is the polynomial itself.
    assert raftlog.crc32(b"\x01") == 0x04C11DB7


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["term", "kill"])
def test_parses_what_lskvd_wrote(server_factory, stop):
    s = make_dir(server_factory, stop)
    log = RaftLog(s.data_dir / "raft")
    es = log.entries()
    assert [e.index for e in es] == list(range(es[0].index, es[-1].index + 1))
    assert es[0].index == 1 and es[0].type == raftlog.CHANGE  # bootstrap configuration
    cmds = [e for e in es if e.type == raftlog.COMMAND]
    assert len(cmds) >= N_KEYS  # every Put, plus signatures
    for e in cmds:
        h = e.sealed_header()
        assert h["version"] in (1, 2) and h["kind"] == 1 and len(e.payload) % 8 == 0
        if h["version"] >= 2:
            assert h["index"] == e.index  # entries are sealed for their place
    assert log.term() >= 1 and all(e.term <= log.term() for e in es)
    # --snapshot-count 10: libraft keeps the newest two snapshots, and a
    # kill -9 right after it took one can leave a third it had not removed yet.
    assert len(log.snapshots) in ((2,) if stop == "term" else (2, 3))
    assert all(sn.crc_ok() for sn in log.snapshots)
    idx = [sn.index for sn in log.snapshots]
    assert idx == sorted(set(idx)) and idx[-1] <= es[-1].index
    if stop == "kill":
        assert any(seg.is_open for seg in log.segments)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["term", "kill"])
def test_round_trip_is_byte_identical_and_loads(server_factory, stop):
    s = make_dir(server_factory, stop)
    before = files(s.data_dir / "raft")
    RaftLog(s.data_dir / "raft").write(everything=True)
    assert files(s.data_dir / "raft") == before
    assert_serves_all(s)


@pytest.mark.slow
def test_restructured_log_loads(server_factory):
    """New batches, renamed closed segments, swapped-back entries, new
    metadata: libraft loads the same log from the rewritten files."""
    s = make_dir(server_factory, "term")
    log = RaftLog(s.data_dir / "raft")
    last = log.entry(log.last_index()).copy()
    cmds = log.commands()
    a, b = cmds[-3].index, cmds[-2].index
    log.swap(a, b)
    log.swap(a, b)
    log.drop(log.last_index())
    log.append([last])
    log.set_term(log.term() + 1)
    log.write()
    again = RaftLog(s.data_dir / "raft")
    assert [(e.index, e.term, e.payload) for e in again.entries()] == \
        [(e.index, e.term, e.payload) for e in log.entries()]
    assert_serves_all(s)


@pytest.mark.slow
def test_operations(server_factory, tmp_path):
    s = make_dir(server_factory, "kill")
    other = make_dir(server_factory, "term")
    log = RaftLog(s.data_dir / "raft")
    orig = [(e.index, e.payload) for e in log.entries()]
    first, last = orig[0][0], orig[-1][0]
    cmds = [e.index for e in log.commands()]
    i, j = cmds[3], cmds[8]

    log.duplicate(i)
    log.write()
    got = RaftLog(s.data_dir / "raft").entries()
    assert got[-1].index == last + 1 and got[-1].payload == dict(orig)[i]
    assert [(e.index, e.payload) for e in got[:-1]] == orig

    log.swap(i, j)
    log.write()
    got = {e.index: e.payload for e in RaftLog(s.data_dir / "raft").entries()}
    assert got[i] == dict(orig)[j] and got[j] == dict(orig)[i]

    log = RaftLog(s.data_dir / "raft")
    log.drop(i)
    log.write()
    got = RaftLog(s.data_dir / "raft").entries()
    assert got[-1].index == last  # one dropped, one duplicated
    assert [e.payload for e in got if e.index < i] == [p for x, p in orig if x < i]
    assert got[i - first].payload == dict(orig)[i + 1]

    ol = RaftLog(other.data_dir / "raft")
    log = RaftLog(s.data_dir / "raft")
    log.splice(ol, cmds[2], cmds[4], at=cmds[2])
    log.write()
    got = {e.index: e.payload for e in RaftLog(s.data_dir / "raft").entries()}
    for k in range(cmds[2], cmds[4] + 1):
        assert got[k] == ol.entry(k).payload

    log = RaftLog(s.data_dir / "raft")
    log.truncate(cmds[10])
    log.write()
    assert RaftLog(s.data_dir / "raft").last_index() == cmds[10]

    log = RaftLog(s.data_dir / "raft")
    # libraft keeps two snapshots; a kill -9 right after it took one may
    # leave a third it had not yet removed: alias the newest two.
    older, newer = log.snapshots[-2:]
    log.snapshot_alias(older, newer)
    log.write()
    raft = s.data_dir / "raft"
    assert (raft / newer.name).read_bytes() == (raft / older.name).read_bytes()
    assert (raft / newer.meta_name).read_bytes() == (raft / older.meta_name).read_bytes()
    assert [sn.name for sn in RaftLog(raft).snapshots][-2:] == [older.name, newer.name]
