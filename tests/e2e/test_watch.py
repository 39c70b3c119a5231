"""Watch as etcd 3.4 has it (issue 9): the same raw gRPC watch sessions and
etcdctl watch commands on etcd and lskvd give the same responses; history
from a start revision comes back in order; a client that does not read
costs bounded memory and still gets every event."""
import os
import queue
import subprocess
import threading
import time

import etcd3
import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

from conftest import ETCDCTL, TARGET, normalize

P = rpc_pb2


class Session:
    """One Watch stream: send requests, read responses with a timeout."""

    def __init__(self, server):
        self.out = queue.Queue()
        self.inq = queue.Queue()
        self.gate = threading.Event()  # cleared: the client stops reading
        self.gate.set()
        self.channel = server.channel()
        self.call = rpc_pb2_grpc.WatchStub(self.channel).Watch(iter(self.out.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self.gate.wait()
                self.inq.put(r)
        except grpc.RpcError as e:
            self.inq.put(e)

    def send(self, **kw):
        self.out.put(P.WatchRequest(**kw))

    def send_progress_request(self):
        # progress_request (field 3) is newer than python3-etcd3's stubs.
        self.out.put(P.WatchRequest.FromString(bytes([3 << 3 | 2, 0])))

    def recv(self, timeout=5):
        try:
            return self.inq.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, quiet=0.5):
        got = []
        while True:
            r = self.recv(quiet)
            if r is None:
                return got
            got.append(r)

    def close(self):
        self.call.cancel()


def shape(r):
    """A response without what differs between servers (ids, terms)."""
    if r is None or isinstance(r, grpc.RpcError):
        return repr(r)
    evs = []
    for e in r.events:
        kv = (e.kv.key, e.kv.value, e.kv.create_revision, e.kv.mod_revision, e.kv.version,
              e.kv.lease)
        prev = None
        if e.HasField("prev_kv"):
            prev = (e.prev_kv.key, e.prev_kv.value, e.prev_kv.mod_revision)
        evs.append((e.type, kv, prev))
    return (r.header.revision, r.watch_id, r.created, r.canceled, r.compact_revision,
            r.cancel_reason, tuple(evs))


def by_watcher(responses):
    """Responses per watch id, each in its order: the order between
    watchers of a stream is not defined (etcd's catch-up runs apart)."""
    out = {}
    for r in responses:
        x = shape(r)
        out.setdefault(x[1] if isinstance(x, tuple) else None, []).append(x)
    return sorted(out.items())


def rss_of(s):
    """The server's resident set size, bytes."""
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def create(key, end=b"", watch_id=None, **kw):
    c = P.WatchCreateRequest(key=key, range_end=end, **kw)
    if watch_id is not None:
        # etcd 3.4's watch_id (field 7) is newer than python3-etcd3's stubs:
        # added as an unknown field, which protobuf keeps on the wire.
        c = P.WatchCreateRequest.FromString(c.SerializeToString() + bytes([7 << 3, watch_id]))
    return dict(create_request=c)


def session_transcript(s):
    kv = s.kv()
    for i in range(5):
        kv.Put(P.PutRequest(key=b"k%d" % i, value=b"v%d" % i))   # revisions 2..6
    kv.DeleteRange(P.DeleteRangeRequest(key=b"k1"))                 # 7
    kv.Put(P.PutRequest(key=b"k2", value=b"again"))                 # 8
    w = Session(s)
    out = []
    w.send(**create(b"k2"))                                          # id 0, live
    w.send(**create(b"k", b"l", start_revision=1, prev_kv=True))     # id 1, history
    w.send(**create(b"k0", start_revision=3))                        # id 2, nothing since
    w.send(**create(b"k", b"l", start_revision=4, filters=[P.WatchCreateRequest.NOPUT]))
    w.send(**create(b"b", b"a"))                                     # empty range
    w.send(**create(b"z", watch_id=7))                               # client id
    w.send(**create(b"z", watch_id=7))                               # duplicate
    w.send(**create(b"", b"\0", start_revision=100))                 # future start
    w.send(cancel_request=P.WatchCancelRequest(watch_id=42))         # unknown: no answer
    out += by_watcher(w.drain())
    txn = P.TxnRequest(success=[
        P.RequestOp(request_put=P.PutRequest(key=b"k3", value=b"t1")),
        P.RequestOp(request_delete_range=P.DeleteRangeRequest(key=b"k4")),
        P.RequestOp(request_put=P.PutRequest(key=b"z", value=b"zz"))])
    kv.Txn(txn)                                                       # 9: one response each
    kv.Put(P.PutRequest(key=b"k2", value=b"last"))                   # 10
    out += by_watcher(w.drain())
    w.send(cancel_request=P.WatchCancelRequest(watch_id=0))
    w.send_progress_request()
    out += by_watcher(w.drain())
    kv.Put(P.PutRequest(key=b"k2", value=b"after-cancel"))           # 11: id 0 is gone
    out += by_watcher(w.drain())
    kv.Compact(P.CompactionRequest(revision=9))
    w.send(**create(b"k", b"l", start_revision=5))                   # compacted
    out += by_watcher(w.drain())
    w.close()
    return out


def test_watch_sessions_as_etcd(pair):
    etcd, lskvd = pair
    want = session_transcript(etcd)
    got = session_transcript(lskvd)
    assert got == want
    # Reference sanity: history came first for id 1, the compacted watch was
    # cancelled with the compaction revision.
    flat = [x for _, xs in want for x in xs]
    assert any(x[1] == 1 and len(x[6]) == 7 for x in flat)
    assert any(x[4] == 9 and x[3] for x in flat)


def watch_output(s, args, writes):
    p = subprocess.Popen([ETCDCTL, "--endpoints=" + s.endpoint] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={"ETCDCTL_API": "3"})
    time.sleep(1.0)
    writes(s)
    time.sleep(1.0)
    p.terminate()
    out, err = p.communicate(timeout=10)
    return normalize(out, s)


def test_many_key_watchers_each_get_their_own_events_as_etcd(pair):
    """300 single-key watchers (lskvd finds them by key: its table grows
    past its first size), a prefix watcher and a from-key watcher on one
    stream; a txn over 20 keys and puts of the rest: every watcher gets
    exactly its keys' events, one response per revision, as etcd sends
    them."""
    got = []
    for s in pair:
        w = Session(s)
        for i in range(300):
            w.send(**create(b"mk%03d" % i))
            assert w.recv().created
        w.send(**create(b"mk1", b"mk2"))
        assert w.recv().created
        w.send(**create(b"mk29", b"\0"))
        assert w.recv().created
        kv = s.kv()
        kv.Txn(P.TxnRequest(success=[P.RequestOp(request_put=P.PutRequest(
            key=b"mk%03d" % i, value=b"t")) for i in range(0, 300, 15)]))
        for i in range(0, 300, 7):
            kv.Put(P.PutRequest(key=b"mk%03d" % i, value=b"p"))
        kv.Put(P.PutRequest(key=b"other", value=b"o"))
        per_watcher = {}
        for r in w.drain(1.5):
            assert not isinstance(r, grpc.RpcError), r
            per_watcher.setdefault(r.watch_id, []).append(shape(r)[2:])
            assert r.header.revision == r.events[0].kv.mod_revision
        w.close()
        got.append(per_watcher)
    assert got[1] == got[0]
    # key watchers: 20 (txn) + 43 (puts); [mk1, mk2): 1 (txn) + 14 (puts);
    # from mk29: mk294 and other
    assert sum(len(v) for v in got[0].values()) == 20 + 43 + 1 + 14 + 2


def test_etcdctl_watch_as_etcd(pair):
    def writes(s):
        for args in (["put", "a", "1"], ["put", "b/x", "2"], ["del", "a"], ["put", "b/y", "3"],
                     ["put", "b/x", "4"]):
            assert s.etcdctl(*args).returncode == 0
    for args in (["watch", "a"], ["watch", "--prefix", "b/"], ["watch", "--prefix", "b/",
                                                                 "--prev-kv"],
                 ["watch", "a", "--rev", "1"], ["watch", "--prefix", "", "-w", "json"]):
        got = []
        for s in pair:
            got.append(watch_output(s, ["watch"] + args[1:], writes))
        assert got[1] == got[0], "etcdctl %s differs" % " ".join(args)
        assert got[0].strip(), "etcd printed nothing for %s" % args


def test_etcdctl_interactive_watch_as_etcd(pair):
    """etcdctl watch -i: watch commands typed on stdin, each a watcher on
    the same stream (one with --prev-kv, one from a revision), then
    writes: the same output as etcd's."""
    got = []
    for s in pair:
        for args in (["put", "ia", "0"], ["put", "ib/1", "0"]):
            assert s.etcdctl(*args).returncode == 0
        p = subprocess.Popen([ETCDCTL, "--endpoints=" + s.endpoint, "watch", "-i"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={"ETCDCTL_API": "3"})
        for line in ("watch ia\n", "watch --prefix ib/ --prev-kv\n", "watch ia --rev 1\n",
                     "watch\n"):  # the last: etcdctl's own error for a missing key
            p.stdin.write(line)
            p.stdin.flush()
            time.sleep(0.3)
        time.sleep(0.7)
        for args in (["put", "ia", "1"], ["put", "ib/1", "2"], ["del", "ia"], ["put", "ib/2", "3"]):
            assert s.etcdctl(*args).returncode == 0
        time.sleep(1.0)
        p.terminate()
        out, err = p.communicate(timeout=10)
        # etcdctl prints each watcher from its own goroutine, line by line:
        # lines of two watchers' events interleave differently from run to
        # run on either server, so the lines are compared as a multiset.
        lines = sorted(normalize(out, s).splitlines())
        # stderr: etcdctl's answer to the bad command (what follows depends
        # on when it is stopped)
        got.append((lines, normalize(err, s).splitlines()[:1]))
    assert got[1] == got[0]
    # ia: 2 watchers x 2 events and the history of the --rev watcher (its
    # first put), ib/: 2 events with their previous values
    assert got[0][0].count("PUT") == 5 and got[0][0].count("DELETE") == 2, got[0]


def test_watch_from_history_after_a_restart(server_factory):
    """Resumable from the last revision seen, after kill -9 of the server."""
    s = server_factory("lskvd", extra=["--snapshot-count", "8"])
    c = etcd3.client(host="127.0.0.1", port=s.client_port)
    for i in range(30):
        c.put("h/%02d" % (i % 7), "v%d" % i)
    s.kill()
    s.start()
    w = Session(s)
    w.send(**create(b"h/", b"h0", start_revision=10))
    got = w.drain(1.0)
    w.close()
    revs = [e.kv.mod_revision for r in got for e in r.events]
    assert got[0].created
    assert revs == list(range(10, 32)), revs


@pytest.mark.skipif(TARGET == "etcd", reason="lskvd's bound")
def test_a_client_that_does_not_read_costs_bounded_memory(server_factory):
    """A watcher (prev_kv) whose client stops reading while 100k events of
    ~2 KB happen: the server's RSS grows by much less than the ~200 MB of
    events it owes (they wait in history, not in memory), and the client
    then gets every event, in order. A first identical round without the
    watcher brings the raft log and caches to their steady size."""
    s = server_factory("lskvd", extra=["--cache-size", "0", "--snapshot-count", "200"])
    kv = s.kv()
    value = b"x" * 1000

    def round_of_writes(prefix):
        for i in range(1000):
            kv.Txn(P.TxnRequest(success=[
                P.RequestOp(request_put=P.PutRequest(key=prefix + b"%03d" % j, value=value))
                for j in range(100)]))

    round_of_writes(b"warm/")
    round_of_writes(b"s/")  # the keys exist: every event below has a prev_kv
    stalled = Session(s)
    stalled.send(**create(b"s/", b"s0", prev_kv=True))
    assert stalled.recv().created
    stalled.gate.clear()
    base = rss_of(s)
    round_of_writes(b"s/")
    grown = rss_of(s) - base
    owed = 100000 * (2 * len(value) + 40)
    print("RSS grew %.1f MB while %.1f MB of events were owed" % (grown / 1e6, owed / 1e6))
    assert grown < owed / 2, "RSS grew %.0f MB for %.0f MB of events owed" % (
        grown / 1e6, owed / 1e6)
    stalled.gate.set()
    seen = 0
    last = 0
    deadline = time.monotonic() + 120
    while seen < 100000 and time.monotonic() < deadline:
        r = stalled.recv(10)
        assert r is not None and not isinstance(r, grpc.RpcError), r
        for e in r.events:
            assert e.kv.mod_revision >= last and e.prev_kv.value == value
            last = e.kv.mod_revision
            seen += 1
    assert seen == 100000
    stalled.close()


def test_many_slow_streams_share_one_server_wide_budget(server_factory, monkeypatch):
    """32 streams whose clients stop reading, each owed ~40 MB of events:
    each may hold 4 MiB, but all together stay within the server-wide
    budget (--max-buffered-request-bytes, 8 MiB here), so RSS grows by less
    than half the 134 MB that 32 full streams would hold (measured without
    the budget: 140-200 MB); then every stream gets every event, in
    order."""
    # Under ASan, freed memory waits in a quarantine (256 MB) that RSS counts.
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4")
    s = server_factory("lskvd", extra=["--cache-size", "0", "--snapshot-count", "200",
                                       "--max-buffered-request-bytes", str(8 << 20)])
    kv = s.kv()
    value = b"y" * 1000
    n_streams, n_txns = 32, 200

    def round_of_writes(prefix):
        for i in range(n_txns):
            kv.Txn(P.TxnRequest(success=[
                P.RequestOp(request_put=P.PutRequest(key=prefix + b"%03d" % j, value=value))
                for j in range(100)]))

    round_of_writes(b"warm/")
    round_of_writes(b"m/")
    stalled = [Session(s) for _ in range(n_streams)]
    for w in stalled:
        w.send(**create(b"m/", b"m0", prev_kv=True))
        assert w.recv().created
        w.gate.clear()
    base = rss_of(s)
    round_of_writes(b"m/")
    grown = rss_of(s) - base
    full = n_streams * (4 << 20)
    print("RSS grew %.1f MB with %d stalled streams (%.0f MB if each held its own limit)" % (
        grown / 1e6, n_streams, full / 1e6))
    assert grown < full / 2, "RSS grew %.0f MB" % (grown / 1e6)
    for w in stalled:
        w.gate.set()
    want = n_txns * 100
    for w in stalled:
        seen, last = 0, 0
        deadline = time.monotonic() + 120
        while seen < want and time.monotonic() < deadline:
            r = w.recv(10)
            assert r is not None and not isinstance(r, grpc.RpcError), r
            for e in r.events:
                assert e.kv.mod_revision >= last and e.prev_kv.value == value
                last = e.kv.mod_revision
                seen += 1
        assert seen == want
        w.close()


def metrics_of(s):
    import urllib.request
    text = urllib.request.urlopen("http://%s/metrics" % s.endpoint, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, val = line.rpartition(" ")
            out[name] = float(val)
    return out


def started(m, method):
    """grpc_server_started_total of one method (0 before its first call)."""
    return sum(v for k, v in m.items()
               if k.startswith("grpc_server_started_total{") and
               'grpc_method="%s"' % method in k)


def test_a_stream_of_many_messages_is_one_started_call_as_etcd(pair):
    """grpc_server_started_total counts a Watch or LeaseKeepAlive stream
    once, however many messages it carries (lskvd counted each)."""
    deltas = []
    for s in pair:
        c = etcd3.client(host="127.0.0.1", port=s.client_port)
        lease = c.lease(100)
        before = metrics_of(s)
        w = Session(s)
        for i in range(5):
            w.send(**create(b"s%d/" % i, b"s%d0" % i))
            assert w.recv().created
        w.close()
        ka = rpc_pb2_grpc.LeaseStub(s.channel()).LeaseKeepAlive(
            iter([P.LeaseKeepAliveRequest(ID=lease.id)] * 5))
        assert len(list(ka)) == 5
        time.sleep(0.2)
        after = metrics_of(s)
        deltas.append({m: started(after, m) - started(before, m)
                       for m in ("Watch", "LeaseKeepAlive")})
    assert deltas[1] == deltas[0] == {"Watch": 1, "LeaseKeepAlive": 1}, deltas


SERIES = ["etcd_debugging_lease_granted_total", "etcd_debugging_lease_revoked_total",
          "etcd_debugging_lease_renewed_total", "etcd_debugging_mvcc_watcher_total",
          "etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_events_total"]


def test_lease_and_watch_metrics_as_etcd(pair):
    """/metrics has etcd's lease and watch series, with etcd's values for
    the same calls."""
    got = []
    for s in pair:
        c = etcd3.client(host="127.0.0.1", port=s.client_port)
        w = Session(s)
        w.send(**create(b"m/", b"m0"))
        assert w.recv().created
        a, b = c.lease(100), c.lease(100)
        list(c.refresh_lease(a.id))
        c.put("m/1", "x", lease=a)
        c.put("m/2", "y")
        b.revoke()
        assert len(w.drain(0.5)) == 2
        m = metrics_of(s)
        got.append({k: m.get(k) for k in SERIES})
        w.close()
    assert got[1] == got[0]
    assert got[0]["etcd_debugging_lease_granted_total"] == 2
    assert got[0]["etcd_debugging_mvcc_watcher_total"] == 1


def read_varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def top_level_varint(buf, field):
    """The value of a top-level varint field in protobuf bytes, or None
    (python3-etcd3's stubs predate WatchResponse.fragment)."""
    i = 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = read_varint(buf, i)
            if num == field:
                return v
        elif wt == 2:
            n, i = read_varint(buf, i)
            i += n
        else:
            raise ValueError("wire type %d" % wt)
    return None


def fragment_transcript(s):
    kv = s.kv()
    for i in range(8):
        kv.Put(P.PutRequest(key=b"f/%d" % i, value=b"a" * 100000))
    w = Session(s)
    # fragment (field 8) is newer than python3-etcd3's stubs: an unknown field.
    c = P.WatchCreateRequest(key=b"f/", range_end=b"f0", prev_kv=True)
    c = P.WatchCreateRequest.FromString(c.SerializeToString() + bytes([8 << 3, 1]))
    w.send(create_request=c)
    assert w.recv().created
    kv.Txn(P.TxnRequest(success=[P.RequestOp(request_put=P.PutRequest(
        key=b"f/%d" % i, value=b"b" * 100000)) for i in range(8)]))
    got = w.drain(1.0)
    w.close()
    return [(len(r.events), top_level_varint(r.SerializeToString(), 7) or 0,
             [(e.kv.key, e.kv.mod_revision, len(e.prev_kv.value)) for e in r.events])
            for r in got]


def test_large_revision_comes_in_fragments_as_etcd(server_factory):
    """A watcher created with fragment gets a revision bigger than
    --max-request-bytes cut as etcd cuts it."""
    pair = [server_factory(k, extra=["--max-request-bytes", "1048576"])
            for k in ("etcd", "lskvd")]
    want = fragment_transcript(pair[0])
    assert len(want) > 1 and want[0][1] == 1 and want[-1][1] == 0, want
    assert fragment_transcript(pair[1]) == want
