"""Flags do what --help says: --max-txn-ops is honoured as etcd honours it,
and flags lskvd does not implement are refused at start, not ignored."""
import subprocess

import grpc
import pytest

from conftest import LSKVD, TARGET, rpc_error, rpc_pb2


def put_op(key):
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))


def txn_answers(server):
    """(code, details or None) of the Txns the limit of 2 decides."""
    kv = server.kv()
    cases = {
        "3 puts": rpc_pb2.TxnRequest(success=[put_op(b"a%d" % i) for i in range(3)]),
        "2 puts": rpc_pb2.TxnRequest(success=[put_op(b"b%d" % i) for i in range(2)]),
        "2 + 2 branches": rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"zz", target=rpc_pb2.Compare.VERSION, version=0)],
            success=[put_op(b"c%d" % i) for i in range(2)],
            failure=[put_op(b"d%d" % i) for i in range(2)]),
        "3 compares": rpc_pb2.TxnRequest(compare=[
            rpc_pb2.Compare(key=b"k%d" % i, target=rpc_pb2.Compare.VERSION, version=0)
            for i in range(3)]),
        # The nested txn gets what the outer level leaves (2 - 1 = 1).
        "nested 1 + 2": rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_txn=rpc_pb2.TxnRequest(success=[put_op(b"e0"), put_op(b"e1")]))]),
        "nested 1 + 1": rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_txn=rpc_pb2.TxnRequest(success=[put_op(b"f0")]))]),
    }
    out = {}
    for name, req in cases.items():
        code, r = rpc_error(kv.Txn, req, timeout=20)
        out[name] = (code, r if code != grpc.StatusCode.OK else r.succeeded)
    return out


def test_max_txn_ops_as_etcd(server_factory):
    etcd = server_factory("etcd", extra=["--max-txn-ops", "2"])
    lskvd = server_factory("lskvd", extra=["--max-txn-ops", "2"])
    want = txn_answers(etcd)
    assert want["3 puts"] == (grpc.StatusCode.INVALID_ARGUMENT,
                              "etcdserver: too many operations in txn request")
    assert want["2 puts"] == (grpc.StatusCode.OK, True)
    assert txn_answers(lskvd) == want
    # etcdctl sees the same refusal.
    r = lskvd.etcdctl("txn", input="\nput x 1\nput y 2\nput z 3\n\n\n")
    assert r.returncode != 0 and "too many operations in txn request" in r.stderr


def big_txn_answers(server):
    """(code, details or succeeded) of the Txns a limit of 1000 decides."""
    kv = server.kv()
    cases = {
        "1000 puts": rpc_pb2.TxnRequest(success=[put_op(b"p%04d" % i) for i in range(1000)]),
        "1001 puts": rpc_pb2.TxnRequest(success=[put_op(b"q%04d" % i) for i in range(1001)]),
        # 500 at the top leave 500 for the nested txn.
        "nested 500 + 500": rpc_pb2.TxnRequest(
            success=[put_op(b"r%04d" % i) for i in range(499)] + [rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(
                    success=[put_op(b"s%04d" % i) for i in range(500)]))]),
        "nested 500 + 501": rpc_pb2.TxnRequest(
            success=[put_op(b"t%04d" % i) for i in range(499)] + [rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(
                    success=[put_op(b"u%04d" % i) for i in range(501)]))]),
    }
    out = {}
    for name, req in cases.items():
        code, r = rpc_error(kv.Txn, req, timeout=20)
        out[name] = (code, r if code != grpc.StatusCode.OK else r.succeeded)
    return out


def test_max_txn_ops_above_default_as_etcd(server_factory):
    """A budget above etcd's default of 128 is honoured, not clamped."""
    etcd = server_factory("etcd", extra=["--max-txn-ops", "1000"])
    lskvd = server_factory("lskvd", extra=["--max-txn-ops", "1000"])
    want = big_txn_answers(etcd)
    assert want["1000 puts"] == (grpc.StatusCode.OK, True)
    assert want["1001 puts"] == (grpc.StatusCode.INVALID_ARGUMENT,
                                 "etcdserver: too many operations in txn request")
    assert big_txn_answers(lskvd) == want
    r = lskvd.kv().Range(rpc_pb2.RangeRequest(key=b"p", range_end=b"q", count_only=True))
    assert r.count == 1000


@pytest.mark.skipif(TARGET == "etcd", reason="lskvd's refusals of flags it lacks")
@pytest.mark.parametrize("flags,why", [
    (["--initial-cluster-state", "existing"], "joining an existing cluster is not implemented"),
    (["--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2",
      "--initial-advertise-peer-urls", "http://127.0.0.1:1", "--name", "a"],
     "multi-member clusters are not implemented"),
    (["--max-txn-ops", "0"], "--max-txn-ops=0"),
    (["--max-txn-ops", "4097"], "--max-txn-ops=4097: must be an integer in [1, 4096]"),
])
def test_unimplemented_flags_refused(tmp_path, flags, why):
    d = tmp_path / "data"
    r = subprocess.run([LSKVD, "--data-dir", str(d),
                        "--listen-client-urls", "http://127.0.0.1:1"] + flags,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert why in r.stderr + r.stdout
    assert not d.exists()  # refused before anything is made
