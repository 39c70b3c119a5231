"""A member that `etcdctl member add` added joins the running cluster with
etcd's `--initial-cluster-state existing` (issue 10 point 4): it starts from
the environment etcdctl prints, gets the id the cluster gave it, catches up,
serves, restarts as the same member, and stops once removed. The same
sequence runs against a 3-member Debian etcd 3.4."""
import json
import re
import shutil
import time

import pytest

from conftest import TARGET, Server, etcdctl, free_port, grpc_channel, rpc_pb2, rpc_pb2_grpc
from test_cluster import (audited_ledgers, leader_of, put_many, read_back_big, status,
                          wait_for)


def add_member(via, name, peer_port, *flags):
    """`etcdctl member add`; returns (id, the ETCD_* variables it printed)."""
    r = etcdctl(via, "member", "add", name, "--peer-urls=http://127.0.0.1:%d" % peer_port,
                *flags)
    assert r.returncode == 0, r.stderr
    mid = int(re.search(r"Member +([0-9a-f]+) added", r.stdout).group(1), 16)
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="([^"]*)"', r.stdout, re.M))
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing", r.stdout
    return mid, env


def joiner(c, kind, name, peer_port, env, workdir):
    """The new member as an operator starts it from etcdctl's output (the
    cluster's token too: etcd derives the other members' ids from it)."""
    token = c.members[0].argv()[c.members[0].argv().index("--initial-cluster-token") + 1]
    s = Server(kind, workdir, name=env["ETCD_NAME"], initial_cluster=env["ETCD_INITIAL_CLUSTER"],
               extra=["--initial-cluster-state", env["ETCD_INITIAL_CLUSTER_STATE"],
                      "--initial-cluster-token", token])
    assert s.name == name
    s.peer_port = peer_port
    return s


def members(server):
    r = etcdctl(server, "member", "list", "-w", "json")
    assert r.returncode == 0, r.stderr
    return {m["ID"]: m for m in json.loads(r.stdout)["members"]}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_added_member_joins_serves_restarts_and_leaves(cluster_factory, tmp_path, kind):
    c = cluster_factory(kind, 3)
    leader_of(c)
    for i in range(50):
        assert etcdctl(c.members[i % 3], "put", "k%02d" % i, "v%d" % i).returncode == 0
    time.sleep(5.5)  # etcd's --strict-reconfig-check: peers connected for 5 s
    port = free_port()
    mid, env = add_member(c.members[1], "m4", port)
    assert members(c.members[0])[mid]["peerURLs"] == ["http://127.0.0.1:%d" % port]
    new = joiner(c, kind, "m4", port, env, tmp_path / "m4")
    try:
        new.start(timeout=90)
        # It is the member the cluster added, under the cluster's id.
        st = status(new)
        assert st["header"]["member_id"] == mid
        assert st["header"]["cluster_id"] == status(c.members[0])["header"]["cluster_id"]
        listed = wait_for(lambda: members(c.members[0])[mid].get("name") == "m4" and
                          members(c.members[0]), what="m4 published")
        assert listed[mid]["clientURLs"] == [new.url]
        # It holds what was written before it joined, and takes writes.
        r = etcdctl(new, "get", "k", "--prefix", "--keys-only")
        assert r.returncode == 0 and r.stdout.split() == ["k%02d" % i for i in range(50)], r
        r = etcdctl(new, "get", "k07", "--consistency=s", "--print-value-only")
        assert r.stdout.strip() == "v7", r
        assert etcdctl(new, "put", "from-m4", "x").returncode == 0
        r = etcdctl(c.members[2], "get", "from-m4", "--print-value-only")
        assert r.returncode == 0 and r.stdout.strip() == "x", r
        # Four voters now: any one of them can go.
        r = etcdctl(new, "endpoint", "status", "--cluster", "-w", "json")
        assert r.returncode == 0 and len(json.loads(r.stdout)) == 4, r
        m1 = status(c.members[0])["header"]["member_id"]
        c.members[0].kill()
        wait_for(lambda: status(new)["leader"] not in (0, m1), timeout=30,
                 what="a leader among the other three")
        assert etcdctl(new, "put", "while-m1-down", "y").returncode == 0
        c.members[0].start()
        # A restart keeps its id (its data dir, not --initial-cluster, says).
        new.stop_cleanly()
        new.start(timeout=90)
        assert status(new)["header"]["member_id"] == mid
        r = etcdctl(new, "get", "while-m1-down", "--print-value-only")
        assert r.returncode == 0 and r.stdout.strip() == "y", r
        if kind == "lskvd":
            new.stop_cleanly()
            shows = audited_ledgers([new, c.members[2]])
            # The joiner's ledger is the cluster's, entry for entry, up to
            # where it stopped.
            assert shows[0] == shows[1][:len(shows[0])], (shows[0][-3:], shows[1][-3:])
            new.start(timeout=90)
        # Removed: the rest serve, the removed member stops. (etcd counts
        # the restarted members as connected after 5 s.)
        time.sleep(5.5)
        r = etcdctl(c.members[0], "member", "remove", "%x" % mid)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not new.alive(), timeout=30, what="the removed member to stop")
        assert mid not in members(c.members[2])
        assert etcdctl(c.members[2], "put", "after", "z").returncode == 0
    finally:
        new.kill()
        shutil.rmtree(new.data_dir, ignore_errors=True)


@pytest.mark.skipif(TARGET == "etcd", reason="lskvd's refusals")
def test_joiner_not_added_or_already_started_is_refused(cluster_factory, tmp_path):
    """A fresh data dir with --initial-cluster-state existing gets no secret
    unless MemberAdd made its member, and cannot take the place of a member
    that has started before (that would be a rolled-back member)."""
    c = cluster_factory("lskvd", 3)
    leader_of(c)
    ic = c.members[0].initial_cluster
    port = free_port()
    stranger = Server("lskvd", tmp_path / "x", name="x",
                      initial_cluster=ic + ",x=http://127.0.0.1:%d" % port,
                      extra=["--initial-cluster-state", "existing"])
    stranger.peer_port = port
    stranger.launch()
    stranger.proc.wait(60)
    log = stranger.log_text()
    assert stranger.proc.returncode == 1, log[-2000:]
    assert "lists no member with peer URLs http://127.0.0.1:%d" % port in log, log[-2000:]
    assert not (stranger.data_dir / "data.key").exists()
    assert not (stranger.data_dir / "identity" / "service.key").exists()
    # m3 has started: a fresh m3 is refused.
    m3 = c.members[2]
    m3_id = status(m3)["header"]["member_id"]
    m3.kill()
    fresh = Server("lskvd", tmp_path / "m3-again", name="m3", initial_cluster=ic,
                   extra=["--initial-cluster-state", "existing"])
    fresh.peer_port = m3.peer_port
    fresh.launch()
    fresh.proc.wait(60)
    log = fresh.log_text()
    assert fresh.proc.returncode == 1, log[-2000:]
    assert "has started before: a fresh data dir cannot take its place" in log, log[-2000:]
    wait_for(lambda: all(status(m)["leader"] not in (0, m3_id) for m in c.members[:2]),
             timeout=30, what="a leader among m1 and m2")
    for m in c.members[:2]:
        assert etcdctl(m, "put", "still", "serving").returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(TARGET == "etcd", reason="lskv's catch-up")
def test_new_member_joins_a_cluster_holding_100k_keys(cluster_factory, tmp_path):
    """A member added to a cluster whose log was compacted long ago installs
    the leader's snapshot: it fetches the ledger and the 100k sealed records
    the snapshot covers in chunks, checks each against the trusted index,
    and serves every key through the verified path; its ledger is the
    cluster's and audits clean."""
    flags = ["--snapshot-count", "50", "--max-txn-ops", "1000"]
    c = cluster_factory("lskvd", 3, extra=flags)
    leader = leader_of(c)
    t0 = time.time()
    n = 100000
    put_many(leader, b"big/", n)
    kv = rpc_pb2_grpc.KVStub(grpc_channel(leader))
    for i in range(200):  # well past the log the leader keeps after a snapshot
        kv.Put(rpc_pb2.PutRequest(key=b"tail", value=b"%d" % i), timeout=10)
    time.sleep(max(0, t0 + 5.5 - time.time()))  # --strict-reconfig-check
    port = free_port()
    mid, env = add_member(leader, "m4", port)
    new = joiner(c, "lskvd", "m4", port, env, tmp_path / "m4")
    new.extra += flags
    try:
        new.start(timeout=180)
        assert status(new)["header"]["member_id"] == mid
        nkv = rpc_pb2_grpc.KVStub(grpc_channel(new))
        r = nkv.Range(rpc_pb2.RangeRequest(key=b"tail"), timeout=30)  # linearizable
        assert r.kvs[0].value == b"199"
        assert read_back_big(nkv) == n
        log = new.log_text()
        assert "held until this member has the ledger entries" in log, log[-3000:]
        assert "caught up: the held snapshot is restored" in log, log[-3000:]
        time.sleep(1)
        for m in c.members + [new]:
            m.stop_cleanly()
        shows = audited_ledgers(c.members + [new])
        k = min(len(x) for x in shows)
        assert k > 100
        for other in shows[1:]:
            assert other[:k] == shows[0][:k]
    finally:
        new.kill()
        shutil.rmtree(new.data_dir, ignore_errors=True)
