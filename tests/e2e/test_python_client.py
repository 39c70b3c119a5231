"""python3-etcd3 (Debian 0.12) against lskvd, compared with the same calls on etcd."""
import etcd3
import grpc
import pytest


def meta(m):
    return None if m is None else (m.key, m.create_revision, m.mod_revision, m.version, m.lease_id)


def error_of(fn, *a, **kw):
    """(code, message) of the exception fn raises; fails if it does not raise."""
    with pytest.raises((grpc.RpcError, etcd3.exceptions.Etcd3Exception)) as ei:
        fn(*a, **kw)
    e = ei.value
    if isinstance(e, grpc.RpcError):
        return e.code(), e.details()
    return type(e).__name__, str(e)


def txn_op_summary(r):
    which = r.WhichOneof("response")
    sub = getattr(r, which)
    return which, sub.header.revision, getattr(sub, "deleted", None)


def scenario(server):
    """A fixed sequence of python-etcd3 calls; returns a comparable transcript."""
    c = etcd3.client(host="127.0.0.1", port=server.client_port, timeout=20)
    out = []
    try:
        r = c.put("/app/a", "1")
        out.append(("put", r.header.revision))
        r = c.put("/app/a", "2", prev_kv=True)
        out.append(("put-prev", r.header.revision, r.prev_kv.value, r.prev_kv.mod_revision))
        for k, v in [("/app/b", b"\x00bin\xff"), ("/app/c/d", "x"), ("/other", "o")]:
            c.put(k, v)
        v, m = c.get("/app/a")
        out.append(("get", v, meta(m)))
        out.append(("get-missing", c.get("/nope")))
        out.append(("prefix", [(v, meta(m)) for v, m in c.get_prefix("/app/")]))
        out.append(("prefix-desc", [m.key for _, m in c.get_prefix(
            "/app/", sort_order="descend", sort_target="mod")]))
        out.append(("range", [m.key for _, m in c.get_range("/app/b", "/other")]))
        out.append(("all", [m.key for _, m in c.get_all(sort_order="ascend", sort_target="value")]))
        out.append(("put-if-not-exists", c.put_if_not_exists("/app/a", "z"),
                    c.put_if_not_exists("/app/new", "n")))
        out.append(("replace", c.replace("/app/a", "2", "3"), c.replace("/app/a", "2", "4"),
                    c.get("/app/a")[0]))
        t = c.transactions
        ok, resps = c.transaction(
            compare=[t.value("/app/a") == "3", t.version("/app/b") > 0,
                     t.create("/app/c/d") < 100, t.mod("/other") != 0],
            success=[t.put("/app/t", "txn"), t.get("/app/a"), t.delete("/other")],
            failure=[t.put("/app/t", "failed")])
        out.append(("txn", ok, [[(kv[0], kv[1].mod_revision) for kv in r] if isinstance(r, list)
                                else txn_op_summary(r) for r in resps]))
        ok, resps = c.transaction(compare=[t.value("/app/a") == "nope"],
                                  success=[t.put("/app/t", "no")],
                                  failure=[t.get("/app/t"), t.put("/app/f", "f")])
        out.append(("txn-fail", ok, len(resps), c.get("/app/t")[0], c.get("/app/f")[0]))
        out.append(("delete", c.delete("/app/a"), c.delete("/app/a")))
        r = c.delete("/app/b", prev_kv=True, return_response=True)
        out.append(("delete-prev", r.deleted, [kv.value for kv in r.prev_kvs], r.header.revision))
        r = c.delete_prefix("/app/")
        out.append(("delete-prefix", r.deleted, r.header.revision))
        out.append(("after", [m.key for _, m in c.get_all()]))
        st = c.status()
        out.append(("status-revision-seen", c.get_response("/x").header.revision))
        assert st.leader is not None and st.leader.name == "n1"
        assert st.raft_index > 0 and st.raft_term > 0 and isinstance(st.version, str)
        members = list(c.members)
        assert len(members) == 1 and members[0].name == "n1"
        assert members[0].client_urls == [server.url]
        out.append(("bad-lease", error_of(c.put, "/leased", "x", lease=123)))
        c.compact(3)
        out.append(("compacted", error_of(c.compact, 2)))
        out.append(("future", error_of(c.compact, 1000)))
    finally:
        c.close()
    return out


def test_python_etcd3_matches_etcd(pair):
    ref, got = (scenario(s) for s in pair)
    assert ref[0] == ("put", 2)
    assert [e[0] for e in got] == [e[0] for e in ref]
    for a, b in zip(got, ref):
        assert a == b
    assert dict((e[0], e) for e in ref)["txn"][1] is True
