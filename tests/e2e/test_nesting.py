"""Txns nested 100 to 1M deep, built as bytes: every depth gets etcd's
answer (gRPC and the JSON gateway), the server stays up, no sanitizer
report (the fixtures fail the test on one). A 4500-deep Txn used to overflow
lskvd's stack in protobuf-c's recursive unpack (issue 8, point 1)."""
import json
import urllib.error
import urllib.request

import grpc
import pytest

from conftest import assert_serves, rpc_pb2

DEPTHS = [100, 129, 130, 1000, 4500, 10000, 100000, 1000000]


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def nested_txn(depth, branch=2, leaf=b""):
    """TxnRequest bytes: depth TxnRequests, each the only op of its parent's
    success (branch 2) or failure (3) list; the innermost is leaf."""
    parts, n = [], len(leaf)
    for _ in range(depth - 1):
        p = b"\x22" + varint(n)  # RequestOp.request_txn
        n += len(p)
        parts.append(p)
        p = bytes([branch << 3 | 2]) + varint(n)
        n += len(p)
        parts.append(p)
    return b"".join(reversed(parts)) + leaf


def read_varint(b, i):
    n = shift = 0
    while True:
        n |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if b[i - 1] < 0x80:
            return n, i


def without_header(resp):
    """The response bytes after its header (field 1, first as both servers
    write it); python's protobuf cannot parse responses over 100 deep."""
    assert resp[:1] == b"\x0a", resp[:16]
    n, i = read_varint(resp, 1)
    return resp[i + n:]


def answer(server, body):
    call = server.channel().unary_unary("/etcdserverpb.KV/Txn")
    try:
        return grpc.StatusCode.OK, without_header(call(body, timeout=60))
    except grpc.RpcError as e:
        return e.code(), e.details()


def test_builder_makes_real_txns():
    t = rpc_pb2.TxnRequest.FromString(nested_txn(3))
    assert t.success[0].request_txn.success[0].request_txn == rpc_pb2.TxnRequest()


@pytest.mark.parametrize("branch", [2, 3])
def test_nested_txns_over_grpc_as_etcd(pair, branch):
    etcd, lskvd = pair
    leaf = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=b"deep", value=b"v"))]).SerializeToString()
    for depth in DEPTHS:
        for lf in (b"", leaf):
            body = nested_txn(depth, branch, lf)
            want = answer(etcd, body)
            got = answer(lskvd, body)
            assert got == want, "depth %d (%d bytes)" % (depth, len(body))
            assert lskvd.alive(), "lskvd died at depth %d" % depth
    assert answer(etcd, nested_txn(10000))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert_serves(lskvd)


def json_txn(depth):
    return (b'{"success":[{"request_txn":' * (depth - 1) + b"{}" + b"}]}" * (depth - 1))


def post(server, body):
    req = urllib.request.Request(server.url + "/v3/kv/txn", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
            out.pop("header", None)
            return r.status, out
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.parametrize("depth", [2, 10, 50, 100, 129, 130, 1000, 4500, 10000, 100000])
def test_nested_txns_over_json(pair, depth):
    etcd, lskvd = pair
    body = json_txn(depth)
    want = post(etcd, body)
    got = post(lskvd, body)
    assert lskvd.alive()
    assert got == want
    assert_serves(lskvd)
