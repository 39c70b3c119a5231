"""Review: unmodified etcdctl 3.4 on both servers, outputs equal (normalized).

Large values (1 MiB via stdin), 10k keys in one range, binary keys (put over
gRPC, read with -w json / --hex), txn ops with flags, lease/alarm commands.
"""
import json

from conftest import lskvd_xfail, normalize, rpc_pb2
from test_etcdctl_compat import run_both, seq

MiB = 1024 * 1024


def test_large_value_via_stdin(pair):
    big = "".join(chr(ord("a") + i % 26) for i in range(MiB))
    ref = run_both(pair, "put", "big", input=big)
    assert ref[1].strip() == "OK"
    for s in pair:
        r = s.etcdctl("get", "big", "--print-value-only")
        assert r.returncode == 0 and r.stdout == big + "\n", (s.kind, len(r.stdout), r.stderr[-300:])
    seq(pair, [
        ("get", "big", "-w", "json"),
        ("put", "big", "small", "--prev-kv", "-w", "json"),
        ("get", "big", "--rev", "2", "-w", "json"),
        ("del", "big", "--prev-kv", "-w", "json"),
    ])


def put_many(server, n, prefix=b"many/"):
    kv = server.kv()
    per = 100
    for start in range(0, n, per):
        req = rpc_pb2.TxnRequest()
        for i in range(start, min(n, start + per)):
            req.success.add().request_put.CopyFrom(
                rpc_pb2.PutRequest(key=prefix + b"%05d" % i, value=b"val-%d" % (i * 7919 % n)))
        kv.Txn(req, timeout=30)


def test_ten_thousand_keys_one_range(pair):
    for s in pair:
        put_many(s, 10000)
    out = seq(pair, [
        ("get", "many/", "--prefix", "--limit", "0"),
        ("get", "many/", "--prefix", "--keys-only"),
        ("get", "many/", "--prefix", "-w", "json"),
        ("get", "many/", "--prefix", "--limit", "1", "-w", "json"),
        ("get", "many/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "--limit", "50"),
        ("get", "many/", "--prefix", "--sort-by", "CREATE", "--order", "ASCEND", "--limit", "3"),
        ("get", "many/01000", "many/02000", "--rev", "50", "-w", "json"),
        ("del", "many/00", "--prefix", "-w", "json"),
        ("get", "many/", "--prefix", "--limit", "1", "-w", "json"),
    ])
    assert len(out[0][1].split("\n")) == 20000
    assert json.loads(out[3][1])["count"] == 10000


BINARY_KEYS = [b"\x00", b"\x00\x00", b"a\x00b", b"\xff", b"\xff\xff", b"\xfe\xff",
               b"k\xffz", b"\x01\x02\x03", b"sp ace", b"\xc3\xa9t\xc3\xa9"]


@lskvd_xfail("kvstore.c cand_cmp breaks ties by key order; etcd's Go sort.Sort "
             "(pdqsort) is not stable above 12 elements")
def test_sort_by_modify_keys_from_one_txn(pair):
    """Keys written by one txn share mod_revision: the tie order shows up in a
    plain `get --prefix --sort-by MODIFY` (etcd's order is deterministic)."""
    for s in pair:
        put_many(s, 300)
    seq(pair, [
        ("get", "many/", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--keys-only"),
        ("get", "many/", "--prefix", "--sort-by", "CREATE", "--order", "ASCEND", "--keys-only",
         "--limit", "20"),
    ])


def test_binary_keys(pair):
    for s in pair:
        kv = s.kv()
        for k in BINARY_KEYS:
            kv.Put(rpc_pb2.PutRequest(key=k, value=b"v" + k), timeout=20)
    seq(pair, [
        ("get", "", "--from-key", "-w", "json"),
        ("get", "", "--from-key", "--hex"),
        ("get", "", "--from-key", "--keys-only", "--hex", "--order", "DESCEND"),
        ("get", "k", "--prefix", "-w", "json"),
        ("get", "", "--prefix", "--sort-by", "VALUE", "-w", "json"),
        ("del", "", "--from-key", "--prev-kv", "-w", "json"),
    ])


def test_txn_ops_with_flags(pair):
    run_both(pair, "put", "x/1", "a")
    run_both(pair, "put", "x/2", "b")
    for t in [
        'value("x/1") = "a"\n\nget x/ --prefix\nput x/3 c --prev-kv\ndel x/2 --prev-kv\n\nget x/1\n\n',
        'mod("x/1") = "2"\n\nget x/ --prefix --keys-only\nget x/ --prefix --count-only\n\n\n',
        'create("x/3") > "0"\n\nget x/ --from-key --limit 1\n\n\n',
        'version("x/1") = "1"\nvalue("x/3") = "c"\n\nput x/1 b\ndel x/ --prefix\n\n\n',
        '\nput y/1 a\nput y/2 b\nput y/3 c\n\n\n',
        'value("y/1") > "a"\n\n\nget y/ --prefix --rev 1\n\n',
        'value("y/1") < "b"\n\nget y/ --prefix --rev 2\n\n\n',
    ]:
        for fmt in ("simple", "json"):
            run_both(pair, "txn", "-w", fmt, input=t)
    run_both(pair, "get", "", "--from-key", "-w", "json")


def test_put_flags_and_misc_commands(pair):
    seq(pair, [
        ("put", "f", "1"),
        ("put", "f", "--ignore-value"),
        ("put", "g", "--ignore-value"),
        ("put", "f", "2", "--ignore-lease"),
        ("put", "f", "3", "--lease", "1234abcd"),
        ("put", "f", "3", "--lease", "zz"),
        ("get", "f", "--consistency", "l", "-w", "fields"),
        ("del", "f", "--prev-kv", "-w", "fields"),
        ("del", "nothing", "-w", "fields"),
        ("lease", "timetolive", "1234abcd"),
        ("lease", "timetolive", "1234abcd", "--keys", "-w", "json"),
        ("lease", "revoke", "1234abcd"),
        ("lease", "list"),
        ("alarm", "list"),
        ("alarm", "disarm"),
        ("compaction", "0"),
        ("compaction", "-1"),
        ("compaction", "1"),
        ("compaction", "3", "--physical"),
        ("get", "f", "--rev", "2"),
        ("get", "f", "--rev", "3", "-w", "json"),
    ])


def test_member_list_and_status_formats(pair):
    """Table / simple / fields outputs agree once ids, sizes and versions are masked."""
    import re

    def mask(text, s):
        t = normalize(text, s)
        t = re.sub(r"\b[0-9a-f]{14,16}\b", "<ID>", t)
        t = re.sub(r"\b\d+(\.\d+)? ?[kMG]?B\b", "<SIZE>", t)
        t = re.sub(r"\b3\.\d+\.\d+\b", "<VER>", t)
        t = re.sub(r'"(ID|MemberID|ClusterID|Leader|RaftTerm|RaftIndex|RaftAppliedIndex|DBSize|DbSize'
                   r'|DbSizeInUse|Version)" : .*', r'"\1" : <m>', t)
        t = t.replace(str(s.peer_port), "<PP>")
        # raft term and indexes (etcd: term 2 after its first election; lskvd: 1)
        t = re.sub(r"(true|false), (true|false), \d+, \d+, \d+, ", r"\1, \2, <raft>, ", t)
        t = re.sub(r"\|\s*\d+\s*(?=\|)", "|<n>", t)      # table cells: widths vary
        t = re.sub(r"-+", "-", re.sub(r" +", " ", t))
        t = re.sub(r"\b[0-9.]+(ms|µs|s)\b", "<T>", t)
        return t
    for args in [("member", "list"), ("member", "list", "-w", "table"),
                 ("member", "list", "-w", "fields"),
                 ("endpoint", "health", "-w", "table"),
                 ("endpoint", "status"), ("endpoint", "status", "-w", "table"),
                 ("endpoint", "status", "-w", "fields")]:
        outs = []
        for s in pair:
            r = s.etcdctl(*args)
            outs.append((r.returncode, mask(r.stdout, s), mask(r.stderr, s)))
        assert outs[1] == outs[0], args
