"""/metrics as etcd 3.4 exposes it: the names lskvd shares with etcd carry
etcd's type and label names (histograms: etcd's buckets too), the series a
dashboard needs are there, and their values move as etcd's do (a put grows
proposals_committed and the gRPC byte counters; a leader change grows
leader_changes_seen on every member), and the peer round-trip times of a
3-member cluster."""
import re
import subprocess
import time

from conftest import free_port, rpc_pb2

REQUIRED = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "gauge",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_mvcc_range_total": "counter",
    "etcd_mvcc_put_total": "counter",
    "etcd_mvcc_delete_total": "counter",
    "etcd_mvcc_txn_total": "counter",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_network_client_grpc_received_bytes_total": "counter",
    "etcd_network_client_grpc_sent_bytes_total": "counter",
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "etcd_server_id": "gauge",
    "etcd_cluster_version": "gauge",
    "etcd_server_version": "gauge",
}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    r = subprocess.run(["curl", "-sS", url + "/metrics"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    types, samples = {}, []
    for line in r.stdout.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, t = line.split(" ", 3)
            types[name] = t
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, line
            samples.append((m.group(1), dict(LABEL.findall(m.group(2) or "")),
                            float(m.group(3))))
    return types, samples


def family(types, name):
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base and types.get(base) == "histogram":
            return base
    return name


def label_names(types, samples):
    out = {}
    for name, labels, _ in samples:
        out.setdefault(family(types, name), set()).update(k for k in labels if k != "le")
    return out


def buckets(samples, name):
    return sorted(float(l["le"]) for n, l, _ in samples if n == name + "_bucket")


def value(samples, name, **want):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == w
                                                          for k, w in want.items())]
    assert vals, (name, want)
    return sum(vals)


def test_names_types_labels_and_values_as_etcd(server_factory):
    scraped = {}
    for kind in ("etcd", "lskvd"):
        metrics_url = "http://127.0.0.1:%d" % free_port()
        s = server_factory(kind, extra=["--listen-metrics-urls", metrics_url])
        s.kv().Put(rpc_pb2.PutRequest(key=b"a", value=b"1"))
        before = scrape(s.url)
        s.kv().Put(rpc_pb2.PutRequest(key=b"b", value=b"2" * 1000))
        after = scrape(s.url)
        on_metrics_url = scrape(metrics_url)
        # etcd's mvcc counters count calls: 7 ranges (3 txn compares, 3 in
        # txns), 2 deletes (one of nothing), 2 puts; txns of more than
        # one call in one mvcc txn: the compares of a write txn are one, its
        # ops another, a read-only txn is one.
        kv = s.kv()
        kv.Range(rpc_pb2.RangeRequest(key=b"a"))
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"a"))
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"none"))
        cmp = rpc_pb2.Compare(key=b"b", target=rpc_pb2.Compare.VERSION, version=1)
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"c", value=b"3"))
        kv.Txn(rpc_pb2.TxnRequest(compare=[cmp], success=[put]))  # 0
        kv.Txn(rpc_pb2.TxnRequest(compare=[cmp, cmp], success=[put]))  # 1
        kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_range=rpc_pb2.RangeRequest(key=b"c"))]))  # 0
        kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_range=rpc_pb2.RangeRequest(key=b"c"))] * 2))  # 1
        mvcc = scrape(s.url)
        scraped[kind] = (before, after, on_metrics_url, mvcc)
    (etypes, esamples), _, _, _ = scraped["etcd"]
    (ltypes, lsamples), (_, lafter), (mtypes, _), _ = scraped["lskvd"]
    elabels, llabels = label_names(etypes, esamples), label_names(ltypes, lsamples)
    for name, t in REQUIRED.items():
        assert etypes.get(name) == t, ("etcd", name)
        assert ltypes.get(name) == t, ("lskvd", name)
    # every etcd_ / grpc_ name lskvd exposes is etcd's, with etcd's type and labels
    for name, t in ltypes.items():
        if not name.startswith(("etcd_", "grpc_")):
            continue
        assert name in etypes, "%s: not an etcd 3.4 metric" % name
        assert t == etypes[name], name
        assert llabels.get(name, set()) == elabels.get(name, set()), name
        if t == "histogram":
            assert buckets(lsamples, name) == buckets(esamples, name), name
    assert set(mtypes) == set(ltypes)  # --listen-metrics-urls serves the same
    counters = {}
    for kind in ("etcd", "lskvd"):
        (_, a), (_, m) = scraped[kind][1], scraped[kind][3]
        counters[kind] = [value(m, "etcd_%s_total" % c) - value(a, "etcd_%s_total" % c)
                          for c in ("mvcc_range", "mvcc_put", "mvcc_delete", "mvcc_txn")]
        counters[kind].append(value(a, "etcd_mvcc_put_total"))
    assert counters["lskvd"] == counters["etcd"] == [7, 2, 2, 2, 2], counters
    for kind in ("etcd", "lskvd"):
        (_, b), (_, a), _, _ = scraped[kind]
        assert value(a, "etcd_server_proposals_committed_total") > \
            value(b, "etcd_server_proposals_committed_total"), kind
        assert value(a, "etcd_server_proposals_applied_total") > \
            value(b, "etcd_server_proposals_applied_total"), kind
        for n in ("etcd_network_client_grpc_received_bytes_total",
                  "etcd_network_client_grpc_sent_bytes_total"):
            assert value(a, n) > value(b, n), (kind, n)
        assert value(a, "etcd_debugging_mvcc_keys_total") == 2, kind
        assert value(a, "etcd_server_has_leader") == 1 and value(a, "etcd_server_is_leader") == 1
        assert value(a, "etcd_disk_wal_fsync_duration_seconds_count") > 0, kind
        assert value(a, "grpc_server_handled_total", grpc_method="Put", grpc_code="OK") == \
            value(b, "grpc_server_handled_total", grpc_method="Put", grpc_code="OK") + 1, kind
    assert value(lafter, "etcd_server_version", server_version="3.4.23") == 1
    assert value(lafter, "etcd_cluster_version", cluster_version="3.4") == 1


def test_leader_change_is_seen_by_every_member(cluster_factory):
    for kind in ("etcd", "lskvd"):
        c = cluster_factory(kind, n=3)
        first = [scrape(m.url)[1] for m in c.members]
        assert [value(s, "etcd_server_has_leader") for s in first] == [1, 1, 1], kind
        assert sum(value(s, "etcd_server_is_leader") for s in first) == 1, kind
        leader = [i for i, s in enumerate(first) if value(s, "etcd_server_is_leader") == 1][0]
        target = c.members[(leader + 1) % 3]
        r = c.members[leader].etcdctl("endpoint", "status", "-w", "json")
        assert r.returncode == 0, r.stderr
        tid = "%x" % int(re.search(r'"member_id":(\d+)', subprocess.run(
            ["etcdctl", "--endpoints=" + target.endpoint, "endpoint", "status", "-w", "json"],
            capture_output=True, text=True, env={"ETCDCTL_API": "3"}).stdout).group(1))
        r = c.members[leader].etcdctl("move-leader", tid)
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.time() + 10
        while time.time() < deadline:
            now = [scrape(m.url)[1] for m in c.members]
            grew = [value(n, "etcd_server_leader_changes_seen_total") >
                    value(f, "etcd_server_leader_changes_seen_total")
                    for f, n in zip(first, now)]
            if all(grew):
                break
            time.sleep(0.1)
        assert all(grew), (kind, grew)
        assert value(now[(leader + 1) % 3], "etcd_server_is_leader") == 1, kind


def test_peer_round_trip_times_as_etcd(cluster_factory):
    """etcd_network_peer_round_trip_time_seconds: on each member of a
    3-member cluster, one histogram per other member (label To, its id in
    hex) with etcd's buckets, observed within seconds of the start."""
    name = "etcd_network_peer_round_trip_time_seconds"
    seen = {}
    for kind in ("etcd", "lskvd"):
        c = cluster_factory(kind, n=3)
        ids = []
        for m in c.members:
            r = m.etcdctl("endpoint", "status", "-w", "json")
            assert r.returncode == 0, r.stderr
            ids.append("%x" % int(re.search(r'"member_id":(\d+)', r.stdout).group(1)))
        deadline = time.time() + 20
        while True:
            scraped = [scrape(m.url) for m in c.members]
            tos = [sorted({l["To"] for n, l, _ in s if n == name + "_count"})
                   for _, s in scraped]
            if all(len(t) == 2 for t in tos) or time.time() > deadline:
                break
            time.sleep(0.5)
        for i, (types, samples) in enumerate(scraped):
            assert tos[i] == sorted(ids[:i] + ids[i + 1:]), (kind, i, tos[i], ids)
            assert types[name] == "histogram"
            for to in tos[i]:
                n = [v for m, l, v in samples if m == name + "_count" and l["To"] == to]
                s = [v for m, l, v in samples if m == name + "_sum" and l["To"] == to]
                assert n[0] >= 1 and 0 < s[0] < n[0] * 5, (kind, to, n, s)
        types, samples = scraped[0]
        seen[kind] = (label_names(types, samples)[name],
                      sorted({float(l["le"]) for m, l, _ in samples if m == name + "_bucket"}))
    assert seen["lskvd"] == seen["etcd"], seen
    assert seen["etcd"][0] == {"To"} and len(seen["etcd"][1]) == 17  # 16 bounds and +Inf
