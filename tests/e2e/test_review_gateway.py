"""Review: the grpc-gateway JSON API with curl, etcd vs lskvd.

Same requests to both; HTTP status, content type and the JSON body (ids and
raft term masked) must be equal.
"""
import base64
import json
import subprocess

import pytest

from conftest import assert_serves, lskvd_xfail, mask_json

MASK = frozenset(("cluster_id", "member_id", "raft_term", "ID", "leader", "raftIndex",
                  "raftTerm", "dbSize", "version", "dbSizeInUse", "raftAppliedIndex",
                  "peerURLs", "clientURLs"))


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def curl(server, path, body=None, method="POST", raw=None, headers=()):
    cmd = ["curl", "-sS", "-X", method, "-o", "-", "-w", "\n%{http_code} %{content_type}",
           server.url + path]
    for h in headers:
        cmd += ["-H", h]
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    if data is not None:
        cmd += ["--data-binary", "@-"]
    r = subprocess.run(cmd, input=data.encode() if isinstance(data, str) else data,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text, _, status = r.stdout.decode("utf-8", "replace").rpartition("\n")
    code, _, ctype = status.partition(" ")
    try:
        obj = mask_json(json.loads(text), MASK)
    except ValueError:
        obj = text
    return int(code), ctype.split(";")[0].strip(), obj


def both(pair, *a, **kw):
    ref, got = (curl(s, *a, **kw) for s in pair)
    assert got == ref, "%s %s\n etcd: %s\nlskvd: %s" % (a, kw, ref, got)
    return ref


def seq(pair, steps):
    """Runs every step on both; reports all differing steps at the end."""
    out, diffs = [], []
    for s in steps:
        a, kw = (s, {}) if isinstance(s, tuple) else ((), s)
        ref, got = (curl(srv, *a, **kw) for srv in pair)
        if got != ref:
            diffs.append("%s %s\n etcd: %s\nlskvd: %s" % (a, kw, ref, got))
        out.append(ref)
    assert not diffs, "\n".join(diffs)
    return out


def test_gateway_kv(pair):
    out = seq(pair, [
        ("/v3/kv/put", {"key": b64("a"), "value": b64("1")}),
        ("/v3/kv/put", {"key": b64("a"), "value": b64("2"), "prev_kv": True}),
        ("/v3/kv/put", {"key": b64("b\x00"), "value": b64(b"\xff\x00")}),
        ("/v3/kv/put", {"key": b64("c"), "value": ""}),
        ("/v3/kv/put", {"key": b64("a"), "ignore_value": True, "prev_kv": True}),
        ("/v3/kv/range", {"key": b64("a"), "range_end": b64("z")}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "limit": 1}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "limit": "2",
                          "sort_order": "DESCEND", "sort_target": "MOD"}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "sort_order": 2,
                          "sort_target": 4}),
        ("/v3/kv/range", {"key": b64("a"), "revision": 2}),
        ("/v3/kv/range", {"key": b64("a"), "revision": "3", "serializable": True}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "keys_only": True}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "count_only": True}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"),
                          "min_mod_revision": "3", "max_create_revision": 4}),
        ("/v3/kv/range", {"key": b64("zz")}),
        ("/v3/kv/deleterange", {"key": b64("a"), "prev_kv": True}),
        ("/v3/kv/deleterange", {"key": b64("\x00"), "range_end": b64("\x00")}),
        ("/v3/kv/deleterange", {"key": b64("a")}),
        ("/v3/kv/range", {"key": b64("\x00"), "range_end": b64("\x00"), "revision": 5}),
    ])
    assert out[5][2]["count"] == "3"


def test_gateway_txn_and_compaction(pair):
    seq(pair, [
        ("/v3/kv/put", {"key": b64("t"), "value": b64("1")}),
        ("/v3/kv/txn", {"compare": [{"key": b64("t"), "target": "VALUE", "result": "EQUAL",
                                     "value": b64("1")}],
                        "success": [{"request_put": {"key": b64("t"), "value": b64("2")}},
                                    {"request_range": {"key": b64("t")}}],
                        "failure": [{"request_delete_range": {"key": b64("t")}}]}),
        ("/v3/kv/txn", {"compare": [{"key": b64("t"), "target": "MOD", "result": "GREATER",
                                     "mod_revision": "10"},
                                    {"key": b64("t"), "target": 0, "result": 3, "version": 0}],
                        "success": [{"request_put": {"key": b64("t"), "value": b64("x")}}],
                        "failure": [{"request_range": {"key": b64("t"), "revision": 2}},
                                    {"request_delete_range": {"key": b64("t"), "prev_kv": True}}]}),
        ("/v3/kv/txn", {"success": [{"request_txn": {"success": [
            {"request_put": {"key": b64("n"), "value": b64("nested")}}]}}]}),
        ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("d"), "value": b64("1")}},
                                    {"request_put": {"key": b64("d"), "value": b64("2")}}]}),
        ("/v3/kv/txn", {"success": [{"request_put": {"key": b64("m%d" % i), "value": ""}}
                                    for i in range(129)]}),
        ("/v3/kv/txn", {}),
        ("/v3/kv/compaction", {"revision": "3"}),
        ("/v3/kv/compaction", {"revision": 2}),
        ("/v3/kv/compaction", {"revision": "100", "physical": True}),
        ("/v3/kv/range", {"key": b64("t"), "revision": "2"}),
        ("/v3/kv/range", {"key": b64("t"), "revision": "100"}),
        ("/v3/kv/range", {"key": b64("n"), "revision": "5"}),
    ])


def test_gateway_errors(pair):
    seq(pair, [
        ("/v3/kv/put", {"key": "", "value": b64("1")}),
        ("/v3/kv/put", {"value": b64("1")}),
        ("/v3/kv/put", {"key": b64("l"), "value": b64("1"), "lease": "999"}),
        ("/v3/kv/put", {"key": b64("l"), "value": b64("1"), "ignore_value": True}),
        ("/v3/kv/range", {}),
        ("/v3/kv/deleterange", {}),
        ("/v3/kv/range", {"key": b64("a"), "sort_target": "NOPE"}),
        dict(path="/v3/kv/range", raw=""),
        dict(path="/v3/kv/range", raw="[]"),
        dict(path="/v3/kv/range", raw='{"key": "!!notbase64"}'),
        dict(path="/v3/kv/range", raw='{"key": "YQ==", "limit": "x"}'),
        dict(path="/v3/kv/range", raw='{"key": "YQ==", "unknown_field": 1}'),
        dict(path="/v3/kv/range", raw='{"key": "YQ==", "keys_only": "yes"}'),
        dict(path="/v3/kv/nope", body={}),
        dict(path="/v3/kv/range", method="GET"),
        dict(path="/v3/kv/range", method="PUT", body={"key": b64("a")}),
        dict(path="/v3/lease/revoke", body={"ID": "7"}),
        dict(path="/v3/lease/timetolive", body={"ID": 7, "keys": True}),
    ])


def test_gateway_maintenance_cluster(pair):
    seq(pair, [
        ("/v3/kv/put", {"key": b64("a"), "value": b64("1")}),
        ("/v3/maintenance/status", {}),
        ("/v3/cluster/member/list", {}),
        ("/v3/maintenance/alarm", {"action": "GET"}),
        ("/v3/maintenance/alarm", {}),
    ])


@pytest.mark.parametrize("path", ["/health", "/version", "/v3/kv/range?x=1"])
def test_gateway_get_paths_status(pair, path):
    outs = []
    for s in pair:
        code, ctype, obj = curl(s, path, method="GET")
        outs.append((code, ctype, sorted(obj) if isinstance(obj, dict) else None))
    assert outs[0] == outs[1]


# Syntax errors: Go's encoding/json scanner messages, byte for byte.
BAD_SYNTAX = [
    '{not json', '{"key": "YQ==",}', '{"key" "YQ=="}', '{"key": YQ==}', '{"key": "YQ==" "x": 1}',
    '{"key": tru}', '{"key": nul}', '{"key": "a\x01"}', r'{"key": "\q"}', r'{"key": "\u12x4"}',
    '{"key": 01}', '{"key": -}', '{"key": 1.}', '{"key": [1 2]}', '{"key": "YQ=="}}',
    '\ufeff{"key": "YQ=="}', r'{"key": "\ud800"}', r'{"key": "YQ==\udc00"}', '{"key": "\xff"}',
    '{"key": "Y\x7f"}', '{"key": "a"\x00}', '{"key": 1.e}', '{"key": 1e}', '{"key": -x}',
    '{"key": f}', '{"key": falsy}', '{"key": nulL}', '{"a": [1, 2,]}', '{"a": {"b": 1 "c"}}',
    '{"key": "\xc3\xa9"}', r'{"key": "\"\\\/\b\f\n\r\t\u00e9"}', '{"key": "\x80"}',
    '{\n"key":\t"YQ=="\r}', '{"key": "YQ==", "limit": 1.5}', '{"limit": 0.0}',
]


def test_gateway_json_syntax_errors(pair):
    seq(pair, [dict(path="/v3/kv/range", raw=b) for b in BAD_SYNTAX])


# Numbers that do not fit an int64 field: Go quotes the literal as written.
BAD_NUMBERS = ['{"limit": 1e2}', '{"limit": 9223372036854775808}',
               '{"limit": -9223372036854775809}', '{"limit": 1E+2}']


@lskvd_xfail("src/http/json.c parse_int: jansson keeps no number text, so an int64 given as "
             "1e2 / 1E+2 is reported as 100.0 and an overflowing literal without its text")
def test_gateway_json_number_text(pair):
    seq(pair, [dict(path="/v3/kv/range", raw=b) for b in BAD_NUMBERS])


def test_gateway_large_bodies(pair):
    MiB = 1024 * 1024
    outs = []
    for s in pair:
        res = []
        for n in (MiB, int(1.6 * MiB), int(2.1 * MiB)):
            code, ctype, obj = curl(s, "/v3/kv/put", raw=json.dumps(
                {"key": b64("big"), "value": b64(b"x" * n)}))
            res.append((code, ctype, obj.get("code") if isinstance(obj, dict) else obj,
                        obj.get("error", "")[:40] if isinstance(obj, dict) else None))
        assert_serves(s)
        outs.append(res)
    assert outs[1] == outs[0]


RAW_BODIES = [
    '{"key": "YQ=="', '{"key": "YQ==", "limit": 1.5}', '{"key": "YQ==", "limit": -1}',
    '{"key": "YQ==", "limit": "9223372036854775807"}',
    '{"key": "YQ==", "limit": null}', '{"key": null}', 'null', '"str"', '1', 'true', '{}',
    '{"key": "YQ"}', '{"key": "YQ=\\u003d"}', '{"key": "Y Q=="}', '{"key": "-_8="}', '{"key": "_-8"}',
    '{"key": "YQ==", "key": "Yg=="}', '{"Key": "YQ=="}', '{"key": "YQ==", "rangeEnd": "Yg=="}',
    '{"key": "YQ==", "sort_order": "descend"}', '{"key": "YQ==", "sort_order": 7}',
    '{"key": "YQ==", "serializable": 1}', '{"key": "YQ==", "serializable": "true"}',
    '{"key": "YQ==", "revision": "0x10"}', '{"key": "YQ==", "revision": " 1"}',
    '{"key": "YQ==", "x": {"y": [1, 2, {"z": null}]}}', '{"key": "YQ=="} trailing',
    '{"key": "YQ=="}\n', ' \t\n{"key":"YQ=="}',
    '[' * 200 + ']' * 200, '{"a":' * 100 + '1' + '}' * 100,
]


def test_gateway_raw_json_bodies(pair):
    for s in pair:
        curl(s, "/v3/kv/put", {"key": b64("a"), "value": b64("A")})
        curl(s, "/v3/kv/put", {"key": b64("b"), "value": b64("B")})
    seq(pair, [dict(path="/v3/kv/range", raw=b) for b in RAW_BODIES])


def test_gateway_http_details(pair):
    """Keep-alive with several requests, HTTP/1.0, chunked bodies, a 2 MiB body."""
    import socket
    outs = []
    for s in pair:
        res = []
        body = json.dumps({"key": b64("k"), "value": b64("v")}).encode()
        with socket.create_connection(("127.0.0.1", s.client_port), timeout=10) as sock:
            req = (b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" %
                   (len(body), body)) * 3
            sock.sendall(req)
            data = b""
            while data.count(b"HTTP/1.1 200") < 3:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            res.append(data.count(b"HTTP/1.1 200"))
        code, ctype, obj = curl(s, "/v3/kv/range", raw='{"key": "aw=="}',
                                headers=["Transfer-Encoding: chunked"])
        res.append((code, obj["kvs"][0]["value"] if code == 200 else obj))
        code, _, obj = curl(s, "/v3/kv/put", raw=json.dumps(
            {"key": b64("mid"), "value": b64(b"x" * (1024 * 1024))}))
        res.append((code, obj.get("header", {}).get("revision") if isinstance(obj, dict) else obj))
        r = subprocess.run(["curl", "-sS", "--http1.0", "-X", "POST", s.url + "/v3/kv/range",
                            "-d", '{"key": "aw=="}'], capture_output=True, text=True, timeout=30)
        res.append(json.loads(r.stdout)["count"])
        outs.append(res)
    assert outs[1] == outs[0]
