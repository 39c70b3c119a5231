"""Membership changes (issue 10 point 4) with unmodified etcdctl 3.4:
`member add/remove/update/promote/list` and etcd's errors on a 3-member lskvd
cluster, compared with a 3-member Debian etcd 3.4 doing the same (ids,
ports and names masked where they differ by design: an added member's id
comes from the clock, as etcd's); a removed follower and a removed leader
stop while the rest serve."""
import json
import re
import subprocess
import time

import grpc
import pytest

from conftest import TARGET, etcdctl, free_port, rpc_error, rpc_pb2 as P, rpc_pb2_grpc
from test_cluster import audited_ledgers, leader_of, status, wait_for


def ids_by_name(server):
    r = etcdctl(server, "member", "list", "-w", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    return {m.get("name", ""): m["ID"] for m in out["members"]}, out["header"]["cluster_id"]


class Masker:
    """Replaces what differs by design between two clusters: the members'
    ids and ports by their names, the cluster id, the added members' ids
    in order of appearance, the new peer ports by their role."""

    def __init__(self, cluster, new_ports):
        names, cid = ids_by_name(cluster.members[0])
        self.ids = {"%x" % i: "<%s>" % n for n, i in names.items()}
        self.ids["%x" % cid] = "<cluster>"
        self.ports = {str(m.peer_port): "<peer-%s>" % m.name for m in cluster.members}
        self.ports.update({str(m.client_port): "<client-%s>" % m.name for m in cluster.members})
        self.ports.update({str(p): "<new-%d>" % i for i, p in enumerate(new_ports)})
        self.added = 0

    def id_of(self, text):
        return text if text not in self.ids else None

    def __call__(self, text):
        def hexid(m):
            h = m.group(0)
            if h not in self.ids:
                self.added += 1
                self.ids[h] = "<added-%d>" % self.added
            return self.ids[h]
        text = re.sub(r"(?<![0-9a-f-])[0-9a-f]{10,16}\b", hexid, text)
        text = re.sub(r"  +<", " <", text)  # etcdctl's %16x pads short ids
        text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: "127.0.0.1:" + self.ports.get(
            m.group(1), m.group(1)), text)
        # etcdctl lists members and ETCD_INITIAL_CLUSTER in id order, which
        # differs between two clusters: compare them as sets.
        text = re.sub(r'ETCD_INITIAL_CLUSTER="([^"]*)"',
                      lambda m: 'ETCD_INITIAL_CLUSTER="%s"' % ",".join(
                          sorted(m.group(1).split(","))), text)
        return text


def run(server, mask, *args):
    r = etcdctl(server, *args)
    out = mask(r.stdout)
    if args[:2] == ("member", "list"):
        # Rows in id order; a table's column widths follow the ids' lengths.
        out = "\n".join(sorted(re.sub(r"-+", "-", re.sub(r" +", " ", x))
                               for x in out.splitlines()))
    # etcdctl's stderr: its "Error:" line (the retry warnings carry times).
    err = "\n".join(x for x in r.stderr.splitlines() if x.startswith("Error:"))
    return "%s\n--- rc=%d\n%s\n%s" % (mask(" ".join(args)), r.returncode, out, err)


def added_id(text):
    m = re.search(r"Member +([0-9a-f]+) added", text)  # %16x
    assert m, text
    return m.group(1)


def sequence(c, ports):
    """The same etcdctl sequence on cluster c; returns the masked transcript."""
    mask = Masker(c, ports)
    m = c.members[0]
    url = ["http://127.0.0.1:%d" % p for p in ports]
    out = []
    r = etcdctl(m, "member", "add", "new1", "--peer-urls=" + url[0])
    assert r.returncode == 0, r.stderr
    new1 = added_id(r.stdout)
    out.append(mask(r.stdout))
    out.append(run(m, mask, "member", "list"))
    # A voter added but not started: etcd's peer health check refuses
    # another voter.
    out.append(run(m, mask, "member", "add", "new2", "--peer-urls=" + url[3]))
    out.append(run(m, mask, "member", "update", new1, "--peer-urls=" + url[1]))
    out.append(run(m, mask, "member", "list"))
    out.append(run(m, mask, "member", "promote", new1))
    out.append(run(m, mask, "member", "remove", new1))
    out.append(run(m, mask, "member", "remove", new1))
    out.append(run(m, mask, "member", "update", new1, "--peer-urls=" + url[2]))
    out.append(run(m, mask, "member", "add", "dup",
                   "--peer-urls=http://127.0.0.1:%d" % c.members[1].peer_port))
    m2 = "%x" % ids_by_name(m)[0]["m2"]
    out.append(run(m, mask, "member", "update", m2,
                   "--peer-urls=http://127.0.0.1:%d" % c.members[2].peer_port))
    out.append(run(m, mask, "member", "promote", m2))
    r = etcdctl(m, "member", "add", "l1", "--learner", "--peer-urls=" + url[2])
    assert r.returncode == 0, r.stderr
    l1 = added_id(r.stdout)
    out.append(mask(r.stdout))
    out.append(run(m, mask, "member", "add", "l2", "--learner", "--peer-urls=" + url[3]))
    out.append(run(m, mask, "member", "promote", l1))
    out.append(run(m, mask, "member", "list"))
    out.append(run(m, mask, "member", "list", "-w", "table"))
    out.append(run(m, mask, "member", "remove", l1))
    out.append(run(m, mask, "member", "add", "bad", "--peer-urls=http://127.0.0.1:1/x"))
    out.append(run(m, mask, "member", "list"))
    # JSON answers: etcd's cluster headers carry no revision.
    for args in (("member", "list"), ("member", "update", m2,
                                      "--peer-urls=http://127.0.0.1:%d" % c.members[1].peer_port)):
        r = etcdctl(m, *args, "-w", "json")
        assert r.returncode == 0, r.stderr
        out.append("%s -w json: header %s" % (args[1], sorted(json.loads(r.stdout)["header"])))
    return "\n".join(out)


def test_member_commands_as_etcd(cluster_factory, tmp_path):
    got = {}
    for kind in ("etcd", "lskvd"):
        c = cluster_factory(kind, 3)
        # The added members' ports are never bound: pick them once the
        # cluster holds its own, so that none is one of the cluster's.
        used = {m.peer_port for m in c.members} | {m.client_port for m in c.members}
        ports = []
        while len(ports) < 4:
            p = free_port()
            if p not in used and p not in ports:
                ports.append(p)
        leader_of(c)
        # etcd counts a peer as healthy once connected for 5 s (its
        # HealthInterval); before that it refuses to add a voter.
        time.sleep(5.5)
        got[kind] = sequence(c, ports)
        c.kill()
    for kind, text in got.items():
        (tmp_path / ("transcript-%s.txt" % kind)).write_text(text)
    assert got["lskvd"] == got["etcd"]
    t = got["etcd"]
    # The sequence shows what it is meant to (and so can fail).
    for text in ("etcdserver: Peer URLs already exists", "etcdserver: unhealthy cluster",
                 "etcdserver: member not found",
                 "etcdserver: can only promote a learner member\n",
                 "etcdserver: too many learner members in cluster",
                 "etcdserver: can only promote a learner member which is in sync with leader",
                 "<added-1>, unstarted, , http://127.0.0.1:<new-1>, , false",
                 "<added-2>, unstarted, , http://127.0.0.1:<new-2>, , true",
                 'ETCD_INITIAL_CLUSTER_STATE="existing"',
                 "Error: URL must not contain a path"):
        assert text in t, (text, t)


def test_member_changes_reach_every_member_and_raft(cluster_factory):
    """A change made through a follower is the same on every member (it is
    a log entry), and raft's configuration follows: an added learner that
    never starts leaves the cluster serving."""
    c = cluster_factory("lskvd", 3)
    lead = leader_of(c)
    f = next(m for m in c.members if m is not lead)
    p = free_port()
    time.sleep(5.5)  # etcd adds a learner too only once every voter is connected for 5 s
    r = etcdctl(f, "member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:%d" % p)
    assert r.returncode == 0, r.stderr
    lists = [json.loads(etcdctl(m, "member", "list", "-w", "json").stdout)["members"]
             for m in c.members]
    for ml in lists:
        assert sorted((x["ID"], x.get("isLearner", False)) for x in ml) == sorted(
            (x["ID"], x.get("isLearner", False)) for x in lists[0])
        assert len(ml) == 4 and sum(1 for x in ml if x.get("isLearner")) == 1
    if TARGET != "etcd":
        wait_for(lambda: "promotion to standby of member" in lead.log_text(), timeout=10,
                 what="raft to take the learner as a standby")
    for i in range(5):
        assert etcdctl(c.members[i % 3], "put", "k%d" % i, "v").returncode == 0
    if TARGET == "etcd":
        return
    # The changes are ledger entries like any other: every member holds the
    # same ones and audits clean.
    l1 = next(x["ID"] for x in lists[0] if x.get("isLearner"))
    assert etcdctl(lead, "member", "update", "%x" % l1,
                   "--peer-urls=http://127.0.0.1:%d" % free_port()).returncode == 0
    assert etcdctl(f, "member", "remove", "%x" % l1).returncode == 0
    time.sleep(1)  # a signature after the last change (--sig-ms-interval)
    for m in c.members:
        m.stop_cleanly()
    shows = audited_ledgers(c.members, timeout=120)
    n = min(len(x) for x in shows)
    for other in shows[1:]:
        assert other[:n] == shows[0][:n]
    # members_init (each member of the new cluster may propose one; the
    # first applied counts), member_add, member_update, member_remove
    changes = [x for x in shows[0][:n] if " type=member " in x]
    assert 4 <= len(changes) <= 6, "\n".join(shows[0])


def test_unhealthy_cluster_refuses_unsafe_changes(cluster_factory):
    """--strict-reconfig-check (etcd's default): with one of three members
    down, adding a voter or removing a member that is up would lose the
    quorum: etcd's "unhealthy cluster"; removing the member that is down
    is allowed, and the two left serve."""
    got = {}
    for kind in ("etcd", "lskvd"):
        c = cluster_factory(kind, 3)
        lead = leader_of(c)
        rest = [m for m in c.members if m is not lead]
        down, up = rest
        ids, _ = ids_by_name(lead)
        down.kill()
        time.sleep(6.5)  # past etcd's HealthInterval (5 s)
        out = []
        for args in (("member", "add", "x", "--peer-urls=http://127.0.0.1:%d" % free_port()),
                     ("member", "remove", "%x" % ids[up.name])):
            r = etcdctl(lead, *args)
            out.append((r.returncode, r.stderr.strip().splitlines()[-1]))
        r = etcdctl(up, "member", "remove", "%x" % ids[down.name])
        # etcdctl prints ids with %16x (space-padded)
        out.append((r.returncode, re.sub(r" +[0-9a-f]{10,16}", " <id>", r.stdout.strip())))
        assert etcdctl(up, "put", "after", "1").returncode == 0
        assert etcdctl(lead, "get", "after", "--print-value-only").stdout.strip() == "1"
        got[kind] = out
        c.kill()
    assert got["lskvd"] == got["etcd"]
    assert got["etcd"][0] == (1, "Error: etcdserver: unhealthy cluster")
    assert got["etcd"][1] == (1, "Error: etcdserver: unhealthy cluster")
    assert got["etcd"][2] == (0, "Member <id> removed from cluster <id>")


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
@pytest.mark.parametrize("which", ["follower", "leader"])
def test_removed_member_stops_and_the_rest_serve(cluster_factory, which, kind):
    c = cluster_factory(kind, 3)
    lead = leader_of(c)
    assert etcdctl(lead, "put", "before", "1").returncode == 0
    time.sleep(5.5)  # etcd's HealthInterval: the members count as up
    gone = lead if which == "leader" else next(m for m in c.members if m is not lead)
    ids, cid = ids_by_name(lead)
    # Asked of the member itself (etcd allows it; the removed member stops).
    r = etcdctl(gone, "member", "remove", "%x" % ids[gone.name])
    if kind == "etcd" and r.returncode != 0:
        # etcd may stop before its answer leaves (seen in CI); the member
        # list below shows the removal took effect. lskvd answers first.
        assert "etcdserver: server stopped" in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "Member %16x removed from cluster %16x" % (ids[gone.name], cid)
    rest = [m for m in c.members if m is not gone]
    # etcd and lskvd both exit (0) once the removal is applied.
    assert gone.proc.wait(30) == 0
    assert "the member has been permanently removed from the cluster" in gone.log_text()
    def serves():
        return etcdctl(rest[0], "put", "after", "2").returncode == 0
    wait_for(serves, timeout=30, what="a write after the removal")
    for m in rest:
        ml = json.loads(etcdctl(m, "member", "list", "-w", "json").stdout)["members"]
        assert sorted(x["name"] for x in ml) == sorted(x.name for x in rest)
        r = etcdctl(m, "get", "", "--prefix", "--keys-only")
        assert r.stdout.split() == ["after", "before"], r.stdout
    # Two voters now: raft's quorum is two of two, so both must be up and
    # a write through either commits.
    for m in rest:
        assert etcdctl(m, "put", "k-" + m.name, "v").returncode == 0
    st = [status(m) for m in rest]
    assert len({s["leader"] for s in st}) == 1
    # Started again from its data dir, it never serves: it stops once it
    # learns that it was removed.
    gone.launch()
    gone.proc.wait(60)
    log = gone.log_text(True)
    assert "the member has been permanently removed from the cluster" in log, log[-2000:]
    assert "ready to serve client requests" not in log, log[-2000:]


def test_member_rpc_errors_as_etcd(pair):
    """Raw gRPC on one member each (what etcdctl checks before sending, too):
    etcd's codes and texts for unknown ids and invalid URLs."""
    got = []
    for s in pair:
        cl = rpc_pb2_grpc.ClusterStub(s.channel())
        out = []
        for fn, req in ((cl.MemberRemove, P.MemberRemoveRequest(ID=1)),
                        (cl.MemberUpdate, P.MemberUpdateRequest(
                            ID=1, peerURLs=["http://127.0.0.1:1"])),
                        # python3-etcd3's stubs predate MemberPromote: ID=1 as bytes
                        (s.channel().unary_unary("/etcdserverpb.Cluster/MemberPromote",
                                                 request_serializer=lambda b: b), b"\x08\x01"),
                        (cl.MemberAdd, P.MemberAddRequest(peerURLs=["127.0.0.1:1"])),
                        (cl.MemberAdd, P.MemberAddRequest(peerURLs=["http://127.0.0.1:1/x"])),
                        (cl.MemberAdd, P.MemberAddRequest(peerURLs=[s.url.replace(
                            str(s.client_port), str(s.peer_port))]))):
            code, detail = rpc_error(fn, req, timeout=20)
            out.append((code, detail if code != grpc.StatusCode.OK else
                        sorted(m.name for m in detail.members)))
        got.append(out)
    assert got[0] == got[1]
    assert [c for c, _ in got[0]] == [grpc.StatusCode.NOT_FOUND] * 3 + [
        grpc.StatusCode.INVALID_ARGUMENT] * 2 + [grpc.StatusCode.FAILED_PRECONDITION]


def gateway(server, path, body):
    """POST body as JSON to the JSON gateway; (HTTP code, parsed answer)."""
    r = subprocess.run(["curl", "-sS", "-X", "POST", "-o", "-", "-w", "\n%{http_code}",
                        server.url + path, "--data-binary", json.dumps(body)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.rpartition("\n")
    return int(code), json.loads(text)


def test_gateway_member_add_and_remove_as_etcd(pair):
    """The JSON gateway's /v3/cluster/member/* (curl): a learner added and
    removed, then removed again, answered in etcd's shape and errors."""
    url = "http://127.0.0.1:%d" % free_port()
    got = []
    for s in pair:
        code, add = gateway(s, "/v3/cluster/member/add", {"peerURLs": [url], "isLearner": True})
        assert code == 200, add
        m = add["member"]
        row = [sorted(add), sorted(add["header"]), sorted(m), m["peerURLs"], m["isLearner"],
               sorted(x.get("isLearner", False) for x in add["members"])]
        code, rm = gateway(s, "/v3/cluster/member/remove", {"ID": m["ID"]})
        row += [code, sorted(rm), sorted(rm["header"]), len(rm["members"])]
        row.append(gateway(s, "/v3/cluster/member/remove", {"ID": m["ID"]}))
        got.append(row)
    assert got[0] == got[1]
    assert got[0][-1] == (404, {"error": "etcdserver: member not found", "code": 5,
                                "message": "etcdserver: member not found"})


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_not_enough_started_members_as_etcd(cluster_factory, kind):
    """etcd's started-member checks (--strict-reconfig-check): a lone member
    may add a second voter that has not started, but not a third, and may
    not remove itself while the other has not started."""
    c = cluster_factory(kind, 1)
    m = c.members[0]
    leader_of(c)
    time.sleep(0.5)
    urls = ["--peer-urls=http://127.0.0.1:%d" % free_port() for _ in range(3)]
    r = etcdctl(m, "member", "add", "a", urls[0])
    assert r.returncode == 0, r.stderr
    r = etcdctl(m, "member", "add", "b", urls[1])
    assert r.returncode != 0
    assert "Error: etcdserver: re-configuration failed due to not enough started members" in \
        r.stderr, r.stderr
    r = etcdctl(m, "member", "remove", "%x" % status(m)["header"]["member_id"])
    assert r.returncode != 0
    assert "Error: etcdserver: re-configuration failed due to not enough started members" in \
        r.stderr, r.stderr
    assert len(ids_by_name(m)[0]) == 2


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_member_moved_by_update_is_reached_at_its_new_peer_url(cluster_factory, kind):
    """member update gives a stopped member a new peer URL; restarted there,
    it is reached: raft replicates to it and it serves what was written.
    (libraft keeps the address a server was added with; lskvd's transport
    dials the one the committed membership lists.)"""
    c = cluster_factory(kind, 3)
    lead = leader_of(c)
    m = next(x for x in c.members if x is not lead)
    mid = "%x" % status(m)["header"]["member_id"]
    m.stop_cleanly()
    old = "http://127.0.0.1:%d" % m.peer_port
    port = free_port()
    r = etcdctl(lead, "member", "update", mid, "--peer-urls=http://127.0.0.1:%d" % port)
    assert r.returncode == 0, r.stderr
    m.peer_port = port
    m.initial_cluster = m.initial_cluster.replace(old, "http://127.0.0.1:%d" % port)
    m.start(timeout=60)
    assert etcdctl(lead, "put", "after-move", "here").returncode == 0
    wait_for(lambda: etcdctl(m, "get", "after-move", "--consistency=s",
                             "--print-value-only").stdout.strip() == "here",
             timeout=30, what="the moved member to apply the write")
    listed = json.loads(etcdctl(m, "member", "list", "-w", "json").stdout)["members"]
    assert [x["peerURLs"] for x in listed if "%x" % x["ID"] == mid] == [
        ["http://127.0.0.1:%d" % port]]
