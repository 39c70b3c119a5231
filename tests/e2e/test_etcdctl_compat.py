"""Identical etcdctl sequences against etcd and lskvd: same normalized output."""
import json

import pytest

from conftest import normalize


def run_both(pair, *args, input=None):
    """Runs etcdctl on both; asserts equal exit code, stdout and stderr.

    Returns etcd's normalized (rc, stdout, stderr) so callers can also check
    the reference behaviour (that the step tested what it meant to).
    """
    results = []
    for s in pair:
        r = s.etcdctl(*args, input=input)
        results.append((r.returncode, normalize(r.stdout, s), normalize(r.stderr, s)))
    ref, got = results
    cmd = " ".join(str(a) for a in args)
    assert got[0] == ref[0], "exit code of `%s`: lskvd %s, etcd %s\n%s" % (cmd, got[0], ref[0], got[2])
    assert got[1] == ref[1], "stdout of `%s` differs" % cmd
    assert got[2] == ref[2], "stderr of `%s` differs" % cmd
    return ref


def seq(pair, steps):
    return [run_both(pair, *step) for step in steps]


def test_put_get_variants(pair):
    steps = [("put", k, v) for k, v in [("a", "1"), ("b", "2"), ("b/x", "3"), ("b/y", "4"),
                                         ("c", "5"), ("a", "6"), ("d", "7"), ("b/x", "8")]]
    steps += [
        ("put", "e", "9", "--prev-kv"),
        ("put", "e", "10", "--prev-kv"),
        ("put", "e", "10", "-w", "json"),
        ("get", "a"),
        ("get", "zz"),
        ("get", "b", "--prefix"),
        ("get", "a", "c"),
        ("get", "a", "--from-key"),
        ("get", "", "--from-key", "--limit", "3"),
        ("get", "a", "--prefix", "--limit", "1", "-w", "json"),
        ("get", "b", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND"),
        ("get", "", "--from-key", "--sort-by", "VALUE", "--order", "ASCEND"),
        ("get", "", "--from-key", "--sort-by", "VERSION", "--order", "DESCEND"),
        ("get", "", "--from-key", "--sort-by", "CREATE", "--order", "ASCEND"),
        ("get", "", "--from-key", "--sort-by", "KEY", "--order", "DESCEND", "--limit", "2"),
        ("get", "a", "--rev", "2"),
        ("get", "b/x", "--rev", "4"),
        ("get", "", "--from-key", "--rev", "5"),
        ("get", "b", "--prefix", "--keys-only"),
        ("get", "b", "--prefix", "--print-value-only"),
        ("get", "", "--from-key", "-w", "json"),
        ("get", "b", "--prefix", "-w", "json", "--rev", "6"),
        ("get", "", "--from-key", "--count-only", "-w", "json"),
        ("get", "b", "--prefix", "--count-only", "--limit", "1", "-w", "json"),
        ("get", "a", "--consistency", "s"),
        ("get", "a", "-w", "fields"),
    ]
    out = seq(pair, steps)
    # Reference sanity: the sequence exercised what it claims.
    assert out[steps.index(("get", "b", "--prefix"))][1].split("\n") == ["b", "2", "b/x", "8", "b/y", "4"]
    j = json.loads(out[steps.index(("get", "", "--from-key", "-w", "json"))][1])
    assert j["header"]["revision"] == 12 and j["count"] == 7


def test_delete_variants(pair):
    steps = [("put", k, k.upper()) for k in ["p/1", "p/2", "p/3", "q", "r", "s"]]
    steps += [
        ("del", "q"),
        ("del", "q"),  # missing key: 0, revision unchanged
        ("del", "p/", "--prefix", "--prev-kv"),
        ("del", "r", "--prev-kv", "-w", "json"),
        ("del", "a", "z"),
        ("get", "", "--from-key", "-w", "json"),
        ("put", "p/1", "again"),
        ("get", "p/1", "-w", "json"),
        ("del", "", "--from-key"),
        ("get", "", "--from-key", "--rev", "7"),
    ]
    out = seq(pair, steps)
    assert out[7][1].strip() == "0"
    assert out[8][1].split("\n")[:3] == ["3", "p/1", "P/1"]


TXNS = [
    # compare on value: success branch
    'value("k") = "v1"\n\nput k v2\nget k\n\nput k never\n\n',
    # compare on value: failure branch
    'value("k") = "nope"\n\nput k never\n\nput other fail-branch\nget other\n\n',
    # version / create / mod compares, several at once
    'version("k") = "2"\nmod("k") > "1"\ncreate("k") = "2"\n\ndel k\n\nput k bad\n\n',
    # compares on a missing key
    'version("missing") = "0"\ncreate("missing") = "0"\n\nput missing now\n\n\n',
    'version("other") < "5"\nvalue("other") = "fail-branch"\n\nput k again\ndel other --prev-kv\n\n\n',
    # value compare on a missing key fails (no key to compare)
    'value("nokey") != "x"\n\nput k never\n\n\n',
    # read-only failure branch: revision stays
    'value("k") = "zzz"\n\nput k x\n\nget k\n\n',
    # duplicate key in one txn is an error
    '\nput d 1\nput d 2\n\n\n',
]


@pytest.mark.parametrize("fmt", ["simple", "json"])
def test_txn_interactive(pair, fmt):
    run_both(pair, "put", "k", "v1")
    for i, t in enumerate(TXNS):
        ref = run_both(pair, "txn", "-w", fmt, input=t)
        if fmt == "simple" and i == 0:
            assert ref[1].startswith("SUCCESS")
        if fmt == "simple" and i == 1:
            assert ref[1].startswith("FAILURE")
    run_both(pair, "get", "", "--from-key", "-w", "json")


def test_compaction_and_revision_errors(pair):
    for i in range(6):
        run_both(pair, "put", "c", str(i))
    seq(pair, [
        ("get", "c", "--rev", "99"),        # future revision
        ("compaction", "4"),
        ("get", "c", "--rev", "3"),          # compacted
        ("get", "c", "--rev", "4"),          # still readable
        ("get", "c", "--rev", "5", "-w", "json"),
        ("compaction", "2"),                 # already compacted
        ("compaction", "100"),               # future
        ("compaction", "6", "--physical"),
        ("get", "c", "--rev", "5"),
        ("get", "c", "-w", "json"),
    ])
    ref = run_both(pair, "get", "c", "--rev", "3")
    assert ref[0] != 0 and "required revision has been compacted" in ref[2]


def test_error_cases(pair):
    seq(pair, [
        ("put", "x", "1"),
        ("get", "x", "--rev", "1000"),
        ("put", "y", "1", "--lease=123"),
        ("put", "", "v"),
        ("get", ""),
        ("del", ""),
        ("get", "x", "--sort-by", "NOPE"),
        ("get", "x", "-w", "json"),
    ])


def test_endpoint_status_health_member_list(pair):
    for i in range(3):
        run_both(pair, "put", "k%d" % i, "v")
    statuses = []
    for s in pair:
        r = s.etcdctl("endpoint", "status", "-w", "json")
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert len(st) == 1 and st[0]["Endpoint"] == s.endpoint
        statuses.append(st[0]["Status"])
    ref, got = statuses
    assert got["header"]["revision"] == ref["header"]["revision"] == 4
    assert isinstance(got.get("version"), str) and got["version"]
    assert got["leader"] == got["header"]["member_id"]
    assert got.get("raftIndex", 0) > 0 and got.get("raftTerm", 0) > 0

    run_both(pair, "endpoint", "health")

    shapes = []
    for s in pair:
        r = s.etcdctl("member", "list", "-w", "json")
        assert r.returncode == 0, r.stderr
        m = json.loads(r.stdout)
        assert len(m["members"]) == 1
        mem = m["members"][0]
        assert mem["name"] == "n1" and mem["clientURLs"] == [s.url]
        assert mem["peerURLs"] == ["http://127.0.0.1:%d" % s.peer_port]
        assert mem["ID"] == m["header"]["member_id"]
        shapes.append(sorted(k for k in mem if k != "isLearner"))
        r = s.etcdctl("member", "list")
        assert r.returncode == 0
        fields = [f.strip() for f in r.stdout.strip().split(",")]
        assert fields[1:] == ["started", "n1", "http://127.0.0.1:%d" % s.peer_port, s.url, "false"]
    assert shapes[0] == shapes[1]


def test_json_gateway_with_curl(pair):
    """grpc-gateway JSON over HTTP/1.1, as curl sends it."""
    import base64
    import subprocess

    def b64(s):
        return base64.b64encode(s.encode()).decode()
    bodies = [("/v3/kv/put", {"key": b64("g"), "value": b64("jay")}),
              ("/v3/kv/put", {"key": b64("g"), "value": b64("jay2"), "prev_kv": True}),
              ("/v3/kv/range", {"key": b64("g")}),
              ("/v3/kv/range", {"key": b64("a"), "range_end": b64("z"), "count_only": True}),
              ("/v3/kv/deleterange", {"key": b64("g")}),
              ("/v3/kv/range", {"key": b64("g"), "revision": "99"})]
    outs = []
    for s in pair:
        res = []
        for path, body in bodies:
            r = subprocess.run(["curl", "-sS", "-X", "POST", s.url + path, "-d", json.dumps(body)],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            res.append(mask_gw(json.loads(r.stdout)))
        outs.append(res)
    assert outs[1] == outs[0]
    assert outs[0][2]["kvs"][0]["value"] == b64("jay2")


def mask_gw(obj):
    from conftest import mask_json
    obj = mask_json(obj)
    if isinstance(obj, dict) and "error" in obj:
        # grpc-gateway error: keep code and message only
        return {"code": obj.get("code"), "error": obj.get("error")}
    return obj
