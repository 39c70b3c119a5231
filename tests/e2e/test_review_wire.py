"""Review: the gRPC wire — compression, big responses, many streams on one
connection, cancelled calls, metadata — etcd vs lskvd."""
import threading

import grpc

from conftest import assert_serves, lskvd_xfail, grpc_channel, rpc_error, rpc_pb2, rpc_pb2_grpc

P = rpc_pb2


def test_gzip_request(pair):
    """A compressed request: etcd 3.4 has no gzip decompressor installed."""
    out = []
    for s in pair:
        kv = s.kv()
        c, r = rpc_error(kv.Put, P.PutRequest(key=b"z", value=b"z" * 1000), timeout=20,
                         compression=grpc.Compression.Gzip)
        out.append((c, r if c != grpc.StatusCode.OK else r.header.revision))
        assert_serves(s)
    assert out[1] == out[0]


def test_big_response_over_grpc_and_etcdctl(pair):
    """10k keys x 1 KiB = 10 MiB in one Range response (HTTP/2 flow control)."""
    res = []
    for s in pair:
        kv = s.kv()
        for start in range(0, 10000, 100):
            req = P.TxnRequest()
            for i in range(start, start + 100):
                req.success.add().request_put.CopyFrom(
                    P.PutRequest(key=b"big/%05d" % i, value=bytes([65 + i % 26]) * 1024))
            kv.Txn(req, timeout=30)
        r = kv.Range(P.RangeRequest(key=b"big/", range_end=b"big0"), timeout=60)
        assert len(r.kvs) == 10000 and r.ByteSize() > 10_000_000
        e = s.etcdctl("get", "big/", "--prefix", "--print-value-only")
        assert e.returncode == 0, e.stderr[-500:]
        lines = e.stdout.splitlines()
        res.append((r.header.revision, r.count, [x.key for x in r.kvs[::997]],
                    len(lines), lines[123]))
    assert res[1] == res[0]


def test_many_streams_one_connection(pair):
    """300 concurrent calls multiplexed on one HTTP/2 connection."""
    for s in pair:
        ch = grpc_channel(s)
        kv = rpc_pb2_grpc.KVStub(ch)
        futs = [kv.Put.future(P.PutRequest(key=b"m/%03d" % i, value=b"x" * (i * 37 % 5000)),
                              timeout=60) for i in range(300)]
        revs = sorted(f.result().header.revision for f in futs)
        assert revs == list(range(2, 302)), s.kind
        futs = [kv.Range.future(P.RangeRequest(key=b"m/", range_end=b"m0"), timeout=60)
                for _ in range(100)]
        assert all(f.result().count == 300 for f in futs)
        ch.close()


def test_cancelled_calls_do_not_kill_the_connection(pair):
    """Fresh channel, 50 calls, every other one cancelled at once: the others
    must all succeed (python-etcd3 users cancel calls this way)."""
    for s in pair:
        failed = []
        for rep in range(30):
            ch = grpc_channel(s)
            kv = rpc_pb2_grpc.KVStub(ch)
            futs = []
            for i in range(50):
                f = kv.Range.future(P.RangeRequest(key=b"\x00", range_end=b"\x00"), timeout=20)
                if i % 2:
                    f.cancel()
                else:
                    futs.append(f)
            for f in futs:
                try:
                    f.result()
                except grpc.RpcError as e:
                    failed.append((rep, e.code(), e.details()))
            ch.close()
        assert not failed, (s.kind, len(failed), failed[:3])
        assert_serves(s)


def test_expired_deadlines(pair):
    """Calls that expire before or while they run leave the server serving."""
    for s in pair:
        kv = s.kv()
        for i in range(50):
            c, r = rpc_error(kv.Put, P.PutRequest(key=b"d", value=b"x"), timeout=0.0001 * (i % 10 + 1))
            # (etcd sometimes answers its own "request timed out" or "context canceled")
            assert s.is_etcd or c in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK), \
                (s.kind, c, r)
        assert_serves(s)


def test_metadata_and_threads(pair):
    """Custom metadata (as clientv3 sends: token, hasleader) is accepted."""
    out = []
    for s in pair:
        kv = s.kv()
        md = [("hasleader", "true"), ("x-custom", "1"), ("bin-bin", b"\x00\xff")]
        r = kv.Put(P.PutRequest(key=b"md", value=b"1"), metadata=md, timeout=20)
        errs = []

        def t():
            try:
                kv.Range(P.RangeRequest(key=b"md"), metadata=md, timeout=20)
            except grpc.RpcError as e:
                errs.append(e)
        ts = [threading.Thread(target=t) for _ in range(20)]
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        out.append((r.header.revision, len(errs)))
    assert out[1] == out[0]
