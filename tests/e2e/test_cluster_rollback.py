"""Rollback and forks (issue 10 point 7) on a 3-member lskvd cluster.

A member restarted from an old copy of its data dir is refused before raft
starts (so before it can vote or serve): the leader holds its acknowledgement
of entries its restored log lacks (consensus/probe.h). A copy of a running
member's data dir started as a second process of that member is refused
while the first one is live (net/peer.h, incarnations). Either way the
refused process answers no client and changes no file, and the cluster keeps
serving every acknowledged write. etcd has neither check (a rolled-back etcd
member panics in raft once the leader sends it a commit index past its log,
or corrupts the cluster), so these are lskvd-only."""
import re
import shutil
import socket
import time

from conftest import Server, dir_state, etcdctl, lskvd_only
from test_cluster import leader_of, wait_for

pytestmark = lskvd_only


def put_all(m, prefix, n):
    for i in range(n):
        r = etcdctl(m, "put", "%s%03d" % (prefix, i), "v%d" % i)
        assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


def keys(m, prefix):
    r = etcdctl(m, "get", prefix, "--prefix", "--keys-only")
    assert r.returncode == 0, r.stderr
    return [k for k in r.stdout.split() if k]


def port_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return False
    except OSError:
        return True


def refused_start(s, timeout=60):
    """Launches s and waits for it to exit; returns (exit code, the refusal
    line). While it runs its client port never accepts a connection."""
    s.launch()
    deadline = time.time() + timeout
    while s.proc.poll() is None:
        assert time.time() < deadline, "still running:\n" + s.log_text(True)[-3000:]
        assert port_closed(s.client_port), "the refused member accepted a client"
        time.sleep(0.1)
    log = s.log_text(True)
    m = re.search(r"error .*refusing to start: (.*)", log)
    assert m, log[-3000:]
    assert "ready to serve client requests" not in log
    return s.proc.returncode, m.group(1)


def copied_follower(cluster_factory, tmp_path, n_before):
    """A 3-member cluster, its leader, a follower and a copy of the
    follower's data dir taken (stopped) after n_before writes; the follower
    runs again."""
    c = cluster_factory("lskvd", 3)
    lead = leader_of(c)
    f = next(m for m in c.members if m is not lead)
    put_all(lead, "a", n_before)
    f.stop_cleanly()
    copy = tmp_path / "copy"
    shutil.copytree(f.data_dir, copy, symlinks=True)
    f.start()
    return c, lead, f, copy


def test_member_restarted_from_old_copy_is_refused(cluster_factory, tmp_path):
    c, lead, f, old = copied_follower(cluster_factory, tmp_path, 10)
    # It acknowledges more after the copy.
    put_all(lead, "b", 30)
    wait_for(lambda: len(keys(f, "b")) == 30, what="the follower to have every write")
    f.stop_cleanly()
    assert leader_of(c) is lead  # the one that holds f's match index
    newest = tmp_path / "newest"
    shutil.move(str(f.data_dir), newest)
    shutil.copytree(old, f.data_dir, symlinks=True)
    before = dir_state(f.data_dir)

    rc, line = refused_start(f)
    assert rc != 0
    assert str(f.data_dir) in line and "rolled back" in line, line
    # The numbers: the restored log's end and what the leader holds.
    m = re.search(r"raft log ends at index (\d+) .* entries up to index (\d+)", line)
    assert m and int(m.group(1)) < int(m.group(2)), line
    assert dir_state(f.data_dir) == before

    # The cluster serves on with every acknowledged write.
    others = [m for m in c.members if m is not f]
    put_all(lead, "c", 5)
    for m in others:
        assert keys(m, "a") == ["a%03d" % i for i in range(10)]
        assert keys(m, "b") == ["b%03d" % i for i in range(30)]
        assert keys(m, "c") == ["c%03d" % i for i in range(5)]

    # Its real data dir starts and catches up: the probe refuses only a rollback.
    shutil.rmtree(f.data_dir)
    shutil.move(str(newest), f.data_dir)
    f.start()
    wait_for(lambda: len(keys(f, "c")) == 5, what="the member to catch up")


def test_second_process_of_a_member_is_refused(cluster_factory, tmp_path):
    c, lead, f, copy = copied_follower(cluster_factory, tmp_path, 5)
    put_all(f, "b", 5)

    # The same member (name, advertised peer URL, cluster) from the copy, on
    # its own ports: another machine given a copied data dir.
    twin = Server("lskvd", tmp_path / "twin", name=f.name, initial_cluster=f.initial_cluster,
                  extra=f.extra)
    twin.data_dir = copy
    advertised = "http://127.0.0.1:%d" % f.peer_port
    base = twin.argv

    def argv():
        a = base()
        a[a.index("--initial-advertise-peer-urls") + 1] = advertised
        return a
    twin.argv = argv
    before = dir_state(copy)
    rc, line = refused_start(twin)
    assert rc != 0
    assert str(copy) in line and "another process of this member is live" in line, line
    assert dir_state(copy) == before
    assert "refusing a second process" in lead.log_text()

    # The first process was never disturbed; nothing acknowledged is lost.
    assert f.alive()
    put_all(f, "c", 5)
    for m in c.members:
        r = etcdctl(m, "get", "", "--prefix", "--keys-only")
        assert r.returncode == 0, r.stderr
        got = [k for k in r.stdout.split() if k[0] in "abc"]
        assert got == ["a%03d" % i for i in range(5)] + ["b%03d" % i for i in range(5)] + \
            ["c%03d" % i for i in range(5)]


def test_whole_cluster_restarts_with_a_member_missing(cluster_factory):
    """Members that start together answer each other's probes before their
    own raft starts: two of three restarted at once start (a majority answered
    and the bound passed), serve, and the third joins them later."""
    c = cluster_factory("lskvd", 3)
    put_all(c.members[0], "a", 5)
    for m in c.members:
        m.stop_cleanly()
    first, second, third = c.members
    first.launch()
    second.launch()
    first.wait_ready(60)
    second.wait_ready(60)
    for m in (first, second):
        assert re.search(r"1 of 2 other members answered the rollback probe", m.log_text(True)), \
            m.log_text(True)[-2000:]
    put_all(second, "b", 5)
    third.start()
    assert re.search(r"[12] of 2 other members answered the rollback probe \(the leader among "
                     r"them\)", third.log_text(True)), third.log_text(True)[-2000:]
    wait_for(lambda: len(keys(third, "b")) == 5, what="the third member to catch up")
    assert keys(third, "a") == ["a%03d" % i for i in range(5)]
