"""Fault rounds under load on 3-member clusters, each member in its own
network namespace (netns.py), checked for linearizability (linearizability.py).

Client threads (each talking to one member over raw gRPC, writing unique
values) record every put, get (linearizable and serializable), delete and
compare-and-set with its invoke/return times; a nemesis runs rounds: partition
the leader, partition a follower, kill -9 the leader, kill -9 a follower,
stop/start a member, replace a follower (member remove, then member add at
its address and a fresh start with --initial-cluster-state existing).
Afterwards: no linearizability violation, no lost
acknowledged write, serializable reads never forged, revisions never going
backwards (per member process, and across the cluster for linearizable ops),
the same data on every member at one revision, and (lskvd) a clean ledger
audit and the same ledger entries on every member. The same nemesis runs
against a 3-member etcd for a few rounds to check the test itself.

LSKV_FAULT_ROUNDS (default 50) rounds against lskvd, LSKV_FAULT_SNAPSHOT_ROUNDS
(default 0) more with a snapshot every 2000 entries, LSKV_FAULT_ROUNDS_ETCD
(default 5 of each) against etcd; `make soak` runs 500 of each.
"""
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import threading
import time

import grpc
import pytest

from conftest import (LSKVCTL, LSKVD, SANITIZER_REPORT, TARGET, lskvd_xfail, rpc_pb2,
                      rpc_pb2_grpc)
from linearizability import (CAS, DELETE, GET, PUT, Op, check, check_serializable,
                             lost_acked_writes)
from netns import NetCluster, netns_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not netns_available(),
                                 reason="network namespaces unavailable (need root and ip)")]

ROUNDS = int(os.environ.get("LSKV_FAULT_ROUNDS", "50"))
ETCD_ROUNDS = int(os.environ.get("LSKV_FAULT_ROUNDS_ETCD", "6"))
SNAPSHOT_ROUNDS = int(os.environ.get("LSKV_FAULT_SNAPSHOT_ROUNDS", "0"))
OP_TIMEOUT = 1.0        # s per client call; past it the outcome is unknown
KEYS_PER_ROUND = 3      # fresh keys each round keep each key's history short
FAULTS = ["partition-leader", "partition-follower", "kill-leader", "kill-follower",
          "restart", "replace-follower"]
NOW = time.monotonic
# Faster elections than the defaults (100/1000 ms) keep rounds short and give
# the majority time to elect a leader while the old one is cut off.
RAFT_FLAGS = ["--heartbeat-interval", "50", "--election-timeout", "500"]
# The "snapshots" variant: a snapshot every 2000 entries, so that members
# restarted or cut off install snapshots from the leader.
SNAPSHOT_FLAGS = ["--snapshot-count", "2000"]
# Per worker between ops: a smaller log keeps restarts quick. Under ASan
# (tests/run-all.sh) libraft's log load reallocs its entry array once per
# entry and ASan's realloc always copies, so loading the log at a restart is
# quadratic: 65k entries took over a minute there (about 3 s in a debug
# build); the ASan run paces its clients four times slower.
SANITIZED = "/asan/" in LSKVD
THINK_S = 0.02 if SANITIZED else 0.005
START_WAIT_S = 120 if SANITIZED else 60


def kind_under_test(kind):
    return "etcd" if TARGET == "etcd" else kind


@pytest.fixture
def net_cluster(tmp_path):
    made = []

    def make(kind, n=3, **kw):
        kw.setdefault("extra", RAFT_FLAGS)
        c = NetCluster(kind_under_test(kind), tmp_path / ("%s-%d" % (kind, len(made))), n,
                       **kw).setup()
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.teardown()
    for c in made:
        for m in c.members:
            text = m.log_text()
            for hit in SANITIZER_REPORT.finditer(text):
                report = text[max(0, hit.start() - 200):hit.start() + 3000]
                pytest.fail("sanitizer report in %s:\n%s" % (m.log_path, report))


def channel(member):
    # Short reconnect backoff: a killed member comes back within seconds.
    opts = [("grpc.enable_retries", 0), ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500),
            ("lskv.test.channel", "%x" % random.getrandbits(48))]
    return grpc.insecure_channel(member.endpoint, opts)


def never_sent(e):
    """The call failed before it reached any server (no connection): it
    certainly did not take effect, unlike a timeout or a server's error."""
    d = (e.details() or "").lower()
    return e.code() == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in d or "connection refused" in d)


class NotRecovered(AssertionError):
    """A member exited by itself during the fault rounds, exited or hung
    instead of serving when the nemesis started it again, or the cluster did
    not get one leader back: the faults were not survived (what the strict
    xfails below expect; a wrong answer or lost data is a plain failure)."""


class Recorder:
    """The shared history: linearizable ops, serializable reads, revisions."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []        # Op: put/get/delete/cas (linearizable)
        self.ser_reads = []  # Op GET with serializable=True
        self.revs = []       # (member name, incarnation, invoke, ret, rev, linearizable)

    def add(self, op, serializable=False, incarnation=None):
        with self.lock:
            (self.ser_reads if serializable else self.ops).append(op)
            if op.rev is not None and op.ret is not None:
                self.revs.append((op.member, incarnation, op.invoke, op.ret, op.rev,
                                  not serializable))


class Worker(threading.Thread):
    """Random single-key ops on the current round's keys through one member."""

    def __init__(self, wid, member, rec, nemesis):
        super().__init__(daemon=True, name="w%d" % wid)
        self.wid, self.member, self.rec, self.nem = wid, member, rec, nemesis
        self.halt = threading.Event()
        self.rng = random.Random(wid * 7919 + int(time.time()))
        self.seq = 0
        self.last_seen = {}
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)

    def _run(self):
        starts, kv = None, None
        while not self.halt.is_set():
            if self.member.starts != starts:  # restarted: new connection
                starts, kv = self.member.starts, rpc_pb2_grpc.KVStub(channel(self.member))
            key = "r%04d/k%d" % (self.nem.round, self.rng.randrange(KEYS_PER_ROUND))
            x = self.rng.random()
            if x < 0.35:
                ok = self.put(kv, key, starts)
            elif x < 0.65:
                ok = self.get(kv, key, False, starts)
            elif x < 0.75:
                ok = self.get(kv, key, True, starts)
            elif x < 0.8:
                ok = self.delete(kv, key, starts)
            else:
                ok = self.cas(kv, key, starts)
            time.sleep(THINK_S if ok else 0.05)

    def _val(self):
        self.seq += 1
        return "w%d-%d" % (self.wid, self.seq)

    def _op(self, kind, key, **kw):
        return Op(kind, key, NOW(), None, client=self.name, member=self.member.name, **kw)

    def put(self, kv, key, inc):
        op = self._op(PUT, key, value=self._val())
        try:
            r = kv.Put(rpc_pb2.PutRequest(key=key.encode(), value=op.value.encode()),
                       timeout=OP_TIMEOUT)
            op.ret, op.rev = NOW(), r.header.revision
        except grpc.RpcError as e:
            if never_sent(e):
                return False
        self.rec.add(op, incarnation=inc)  # ret None: unknown outcome
        return op.ret is not None

    def get(self, kv, key, serializable, inc):
        op = self._op(GET, key)
        try:
            r = kv.Range(rpc_pb2.RangeRequest(key=key.encode(), serializable=serializable),
                         timeout=OP_TIMEOUT)
        except grpc.RpcError:
            return False  # a failed read did nothing
        op.ret, op.rev = NOW(), r.header.revision
        op.result = r.kvs[0].value.decode() if r.kvs else None
        self.last_seen[key] = op.result
        self.rec.add(op, serializable=serializable, incarnation=inc)
        return True

    def delete(self, kv, key, inc):
        op = self._op(DELETE, key)
        try:
            r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=OP_TIMEOUT)
            op.ret, op.rev, op.result = NOW(), r.header.revision, r.deleted
        except grpc.RpcError as e:
            if never_sent(e):
                return False
        self.rec.add(op, incarnation=inc)
        return op.ret is not None

    def cas(self, kv, key, inc):
        expect = self.last_seen.get(key)
        op = self._op(CAS, key, expect=expect, value=self._val())
        if expect is None:
            cmp = rpc_pb2.Compare(key=key.encode(), target=rpc_pb2.Compare.CREATE,
                                  result=rpc_pb2.Compare.EQUAL, create_revision=0)
        else:
            cmp = rpc_pb2.Compare(key=key.encode(), target=rpc_pb2.Compare.VALUE,
                                  result=rpc_pb2.Compare.EQUAL, value=expect.encode())
        req = rpc_pb2.TxnRequest(compare=[cmp], success=[rpc_pb2.RequestOp(
            request_put=rpc_pb2.PutRequest(key=key.encode(), value=op.value.encode()))])
        try:
            r = kv.Txn(req, timeout=OP_TIMEOUT)
            op.ret, op.rev, op.result = NOW(), r.header.revision, r.succeeded
        except grpc.RpcError as e:
            if never_sent(e):
                return False
        self.rec.add(op, incarnation=inc)
        return op.ret is not None


class Nemesis:
    def __init__(self, cluster, log):
        self.c = cluster
        self.round = 0
        self.log = log
        self.crashes = []

    def note(self, fmt, *a):
        self.log.append("%.3f r%d " % (NOW(), self.round) + fmt % a)

    def healthy(self, timeout=30):
        """Every member up and agreeing on one leader. A member that exited
        by itself (the nemesis restarts those it stops) is a crash: noted,
        restarted so the other checks still run, and failed at the end."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [m for m in self.c.members if not m.alive()]
            for m in dead:
                self.crashes.append("%s exited with %s in round %d; log tail:\n%s" % (
                    m.name, m.proc.returncode, self.round, m.log_text(True)[-1500:]))
                self.note("CRASH %s exit %s", m.name, m.proc.returncode)
                m.launch()  # all at once: a member may need the others to start
            for m in dead:
                self.wait_started(m)
            sts = [m.status() for m in self.c.members]
            if all(sts) and len({s.get("leader") for s in sts}) == 1 and sts[0].get("leader"):
                return
            time.sleep(0.1)
        raise NotRecovered("cluster not healthy after %ss: %s; errors: %s" % (
            timeout, sts, [(m.name, m.proc.poll(), m.last_status_error) for m in self.c.members]))

    def start(self, m):
        m.launch()
        self.wait_started(m)

    def wait_started(self, m, tries=5):
        """Waits until m serves; a member that exits instead of serving is a
        failure like a crash (noted, failed at the end) and is started again."""
        for i in range(tries):
            try:
                return m.wait_ready(START_WAIT_S)
            except RuntimeError as e:
                if m.alive():
                    raise NotRecovered("%s did not serve within %d s of its start in round %d "
                                       "(earlier failures: %d):\n%s" % (
                                           m.name, START_WAIT_S, self.round, len(self.crashes),
                                           e)) from e
                if i == tries - 1:
                    raise NotRecovered("%s never served again after %d starts; failures:\n%s"
                                        % (m.name, tries, "\n".join(self.crashes[-3:])))
                self.crashes.append("%s exited with %s while starting in round %d; log "
                                    "tail:\n%s" % (m.name, m.proc.returncode, self.round,
                                                   m.log_text(True)[-1500:]))
                self.note("START FAILED %s exit %s", m.name, m.proc.returncode)
                time.sleep(0.5)
                m.launch()

    def member_change(self, via, *args, timeout=30):
        """etcdctl member ...; retried while the cluster is "unhealthy" (a
        member connected for less than 5 s: --strict-reconfig-check)."""
        deadline = time.time() + timeout
        while True:
            r = via.etcdctl("member", *args)
            if r.returncode == 0 or time.time() > deadline:
                break
            self.note("member %s: %s", args[0], r.stderr.strip()[-200:])
            time.sleep(0.5)
        if r.returncode != 0:
            raise NotRecovered("member %s failed: %s" % (" ".join(args), r.stderr[-500:]))
        return r.stdout

    def replace(self, victim, leader):
        """Removes a member, which stops by itself, and adds a fresh one at
        its address: it joins with --initial-cluster-state existing and
        catches up while the load goes on."""
        st = victim.status()
        if st is None:
            raise NotRecovered("%s does not answer before its removal" % victim.name)
        vid = "%x" % st["header"]["member_id"]
        self.member_change(leader, "remove", vid)
        try:
            victim.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise NotRecovered("%s still runs 30 s after its removal" % victim.name)
        self.note("removed %s (%s): exit %s", victim.name, vid, victim.proc.returncode)
        shutil.rmtree(victim.data_dir)
        out = self.member_change(leader, "add", victim.name, "--peer-urls=" + victim.peer_url)
        self.note("added %s again: %s", victim.name,
                  re.search(r"Member +([0-9a-f]+) added", out).group(1))
        victim.joins_existing = True
        self.start(victim)

    def run_round(self, fault, load_s):
        c = self.c
        self.healthy()
        time.sleep(0.3)
        leader = c.leader()
        followers = [m for m in c.members if m is not leader]
        victim = leader if fault.endswith("leader") else random.choice(followers)
        if fault == "restart":
            victim = random.choice(c.members)
        self.note("%s %s (leader %s)", fault, victim.name, leader.name)
        if fault.startswith("partition"):
            c.partition([victim])
            time.sleep(load_s + 0.5)  # long enough for an election on the majority side
            c.heal()
        elif fault == "replace-follower":
            self.replace(victim, leader)
        elif fault.startswith("kill"):
            victim.kill()
            time.sleep(load_s)
            self.start(victim)
        else:
            rc = victim.stop()
            self.note("stopped %s: exit %s", victim.name, rc)
            time.sleep(0.2)
            self.start(victim)
        self.note("healed")
        time.sleep(0.3)


def final_reads(cluster, rec, keys):
    """A linearizable read of every key after the faults (part of the history)."""
    final = {}
    kv = rpc_pb2_grpc.KVStub(channel(cluster.members[0]))
    for key in sorted(keys):
        for _ in range(50):
            t0 = NOW()
            try:
                r = kv.Range(rpc_pb2.RangeRequest(key=key.encode()), timeout=3)
            except grpc.RpcError:
                time.sleep(0.2)
                continue
            v = r.kvs[0].value.decode() if r.kvs else None
            rec.ops.append(Op(GET, key, t0, NOW(), result=v, client="final",
                              member=cluster.members[0].name, rev=r.header.revision))
            final[key] = v
            break
        else:
            raise AssertionError("final read of %r never succeeded" % key)
    return final


def revision_regressions(revs, linearizable_only, group):
    """Ops that returned a lower revision than an op that returned before they
    were invoked (in the same group: member incarnation, or the cluster)."""
    out = []
    groups = {}
    for r in revs:
        if linearizable_only and not r[5]:
            continue
        groups.setdefault(group(r), []).append(r)
    for g, rs in groups.items():
        by_ret = sorted(rs, key=lambda r: r[3])
        i, best = 0, None
        for r in sorted(rs, key=lambda r: r[2]):
            while i < len(by_ret) and by_ret[i][3] < r[2]:
                if best is None or by_ret[i][4] > best[4]:
                    best = by_ret[i]
                i += 1
            if best is not None and r[4] < best[4]:
                out.append("%s: rev %d at [%.3f,%.3f] after rev %d returned at %.3f" % (
                    g, r[4], r[2], r[3], best[4], best[3]))
    return out


def same_data(cluster):
    """Every member's kvs over all keys at one revision; returns that revision."""
    kv0 = rpc_pb2_grpc.KVStub(channel(cluster.members[0]))
    rev = kv0.Range(rpc_pb2.RangeRequest(key=b"\0"), timeout=5).header.revision
    dumps = {}
    for m in cluster.members:
        kv = rpc_pb2_grpc.KVStub(channel(m))
        deadline = time.time() + 30
        while True:
            r = kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", serializable=True),
                         timeout=5)
            if r.header.revision >= rev or time.time() > deadline:
                break
            time.sleep(0.1)
        assert r.header.revision >= rev, "%s stuck at revision %d < %d" % (
            m.name, r.header.revision, rev)
        r = kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", revision=rev,
                                          serializable=True), timeout=5)
        dumps[m.name] = [(x.key, x.value, x.create_revision, x.mod_revision, x.version)
                         for x in r.kvs]
    names = list(dumps)
    for n in names[1:]:
        assert dumps[n] == dumps[names[0]], "%s and %s differ at revision %d" % (
            names[0], n, rev)
    return rev, len(dumps[names[0]])


LEDGER_FIELDS = re.compile(r"leaf=\d+ txid=\S+ rev=\S+ type=\S+|wsd=\S+|tree_size=\S+ root=\S+")


def ledgers(cluster):
    """Audits every (stopped) member's ledger; returns each one's entries as
    (leaf, txid, rev, type, wsd, signed root) lines, chunk layout left out."""
    out = {}
    for m in cluster.members:
        d = m.data_dir
        r = subprocess.run([LSKVCTL, "ledger", "audit", str(d / "ledger"),
                            "--service-cert", str(d / "identity" / "service.pem"),
                            "--ledger-secret", str(d / "ledger.secret"), "--no-progress"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, "%s: ledger audit failed:\n%s" % (m.name, r.stdout + r.stderr)
        s = subprocess.run([LSKVCTL, "ledger", "show", str(d / "ledger")],
                           capture_output=True, text=True, timeout=300)
        assert s.returncode == 0, s.stderr
        out[m.name] = [" ".join(LEDGER_FIELDS.findall(line)) for line in s.stdout.splitlines()]
    return out


def dump_history(path, log, rec):
    with open(str(path) + ".pickle", "wb") as f:
        pickle.dump((log, rec.ops, rec.ser_reads, rec.revs), f)
    with open(path, "w") as f:
        f.write("\n".join(log) + "\n")
        ser = set(map(id, rec.ser_reads))
        for op in sorted(rec.ops + rec.ser_reads, key=lambda o: o.invoke):
            f.write("%s member=%s%s\n" % (op, op.member,
                                          " serializable" if id(op) in ser else ""))


def run_faults(cluster, rounds, tmp_path):
    rec = Recorder()
    log = []
    nem = Nemesis(cluster, log)
    workers = [Worker(i, cluster.members[i % 3], rec, nem) for i in range(4)]
    t0 = time.time()
    for w in workers:
        w.start()
    try:
        for r in range(rounds):
            nem.round = r
            nem.run_round(FAULTS[r % len(FAULTS)], load_s=1.5)
        for w in workers:
            w.halt.set()
        for w in workers:
            w.join(10)
        cluster.heal()
        nem.round = rounds
        nem.healthy()
        keys = {op.key for op in rec.ops}
        final = final_reads(cluster, rec, keys)
    finally:
        for w in workers:
            w.halt.set()
        cluster.heal()
        dump_history(tmp_path / "history.txt", log, rec)
    elapsed = time.time() - t0

    acked = sum(1 for o in rec.ops if o.ret is not None and o.kind != GET)
    unknown = sum(1 for o in rec.ops if o.ret is None)
    print("%d rounds in %.0fs: %d ops (%d writes acked, %d unknown), %d serializable reads, "
          "%d keys, %d crashes; history in %s" % (
              rounds, elapsed, len(rec.ops), acked, unknown, len(rec.ser_reads), len(keys),
              len(nem.crashes), tmp_path / "history.txt"))
    assert all(w.error is None for w in workers), [w.error for w in workers]
    assert acked > rounds * 5, "too little got through: %d acked writes" % acked

    t1 = time.time()
    violations = check(rec.ops)
    print("checked in %.1fs" % (time.time() - t1))
    assert not violations, "%d keys not linearizable; first:\n%s" % (
        len(violations), violations[0])
    # The checker is not vacuous on this history: one read changed to a value
    # written only at the end of its key's history makes it fail.
    key = max(keys, key=lambda k: sum(o.key == k for o in rec.ops))
    kops = [o for o in rec.ops if o.key == key]
    reads = [o for o in kops if o.kind == GET and o.client != "final"]
    writes = [o for o in kops if o.kind == PUT and o.ret is not None]
    if reads and writes:
        last = max(writes, key=lambda o: o.invoke)
        early = min(reads, key=lambda o: o.invoke)
        if early.ret < last.invoke:
            mutated = [Op(GET, key, early.invoke, early.ret, result=last.value)
                       if o is early else o for o in kops]
            assert check(mutated) != [], "checker accepted a read from the future"
    assert lost_acked_writes(rec.ops, final) == []
    assert check_serializable(rec.ser_reads, rec.ops) == []
    per_member = revision_regressions(rec.revs, False, lambda r: "%s#%s" % (r[0], r[1]))
    assert per_member == [], per_member[:10]
    cluster_wide = revision_regressions(rec.revs, True, lambda r: "cluster")
    assert cluster_wide == [], cluster_wide[:10]
    rev, nkeys = same_data(cluster)
    print("same data on every member at revision %d (%d keys)" % (rev, nkeys))
    return rec, nem.crashes


@pytest.mark.parametrize("kind,snapshots", [
    ("etcd", False), ("etcd", True),
    ("lskvd", False),
    ("lskvd", True)])
def test_fault_rounds_are_linearizable(net_cluster, tmp_path, kind, snapshots):
    """LSKV_FAULT_ROUNDS rounds in the default configuration,
    LSKV_FAULT_SNAPSHOT_ROUNDS (default 0: skipped; `make soak` runs them)
    with a snapshot every 2000 entries; etcd runs LSKV_FAULT_ROUNDS_ETCD of each."""
    if kind_under_test(kind) == "etcd":
        rounds = ETCD_ROUNDS
    else:
        rounds = SNAPSHOT_ROUNDS if snapshots else ROUNDS
    if rounds == 0:
        pytest.skip("LSKV_FAULT_SNAPSHOT_ROUNDS=0")
    c = net_cluster(kind, extra=RAFT_FLAGS + (SNAPSHOT_FLAGS if snapshots else []))
    _, crashes = run_faults(c, rounds, tmp_path)
    if c.kind == "lskvd":
        for m in c.members:
            m.stop()
        led = ledgers(c)
        sizes = {n: len(v) for n, v in led.items()}
        print("ledger entries per member: %s" % sizes)
        names = list(led)
        for n in names[1:]:
            k = min(len(led[n]), len(led[names[0]]))
            diff = next((i for i in range(k) if led[n][i] != led[names[0]][i]), None)
            assert diff is None, "ledgers of %s and %s differ at leaf %d:\n%s\n%s" % (
                names[0], n, diff, led[names[0]][diff], led[n][diff])
        assert len(set(sizes.values())) == 1, sizes
    if crashes:
        raise NotRecovered("%d member crashes; first: %s" % (len(crashes), crashes[0]))


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_isolated_old_leader_never_answers_a_stale_linearizable_read(net_cluster, kind):
    c = net_cluster(kind)
    old = c.leader()
    rest = [m for m in c.members if m is not old]
    assert old.etcdctl("put", "x", "old").returncode == 0
    kv_old = rpc_pb2_grpc.KVStub(channel(old))
    # Wait until old has applied x=old locally.
    deadline = time.time() + 10
    while kv_old.Range(rpc_pb2.RangeRequest(key=b"x", serializable=True),
                       timeout=2).kvs[0:1] == [] and time.time() < deadline:
        time.sleep(0.05)
    c.partition([old])
    try:
        new = c.leader(among=rest)
        deadline = time.time() + 20
        while rest[0].etcdctl("put", "x", "new").returncode != 0:
            assert time.time() < deadline, "no write on the majority side"
        assert new.etcdctl("get", "x", "--print-value-only").stdout.strip() == "new"
        # Linearizable reads on the isolated ex-leader: fail, never "old".
        answers = []
        for _ in range(3):
            try:
                r = kv_old.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=2)
                answers.append(r.kvs[0].value.decode() if r.kvs else None)
            except grpc.RpcError as e:
                answers.append(e.code())
        assert all(isinstance(a, grpc.StatusCode) or a == "new" for a in answers), answers
        assert any(isinstance(a, grpc.StatusCode) for a in answers), answers
        # A serializable read there may be stale, but is a value that was written.
        r = kv_old.Range(rpc_pb2.RangeRequest(key=b"x", serializable=True), timeout=2)
        assert [x.value for x in r.kvs] in ([b"old"], [b"new"])
    finally:
        c.heal()
    # Healed, the ex-leader catches up: its linearizable read says "new".
    deadline = time.time() + 30
    while True:
        try:
            r = rpc_pb2_grpc.KVStub(channel(old)).Range(rpc_pb2.RangeRequest(key=b"x"),
                                                         timeout=2)
            if r.kvs and r.kvs[0].value == b"new":
                break
        except grpc.RpcError:
            pass
        assert time.time() < deadline, "healed ex-leader never read the new value"
        time.sleep(0.2)


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_member_removed_while_cut_off_stops_once_healed(net_cluster, kind):
    """A follower removed while it cannot hear the leader never applies its
    own removal, and the leader no longer replicates to it: it must still
    learn that it was removed when the network heals, and stop (etcd's peers
    answer a removed member's messages "removed"; the same race, a removal
    committed just before the leader stops replicating to it, stranded a
    member in CI's fault rounds)."""
    c = net_cluster(kind)
    leader = c.leader()
    gone = next(m for m in c.members if m is not leader)
    rest = [m for m in c.members if m is not gone]
    assert leader.etcdctl("put", "before", "1").returncode == 0
    gone_id = "%x" % gone.status()["header"]["member_id"]
    time.sleep(5.5)  # etcd's HealthInterval (--strict-reconfig-check)
    c.partition([gone])
    try:
        deadline = time.time() + 30
        while True:
            r = leader.etcdctl("member", "remove", gone_id)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert r.returncode == 0, r.stderr
        assert leader.etcdctl("put", "after", "2").returncode == 0
        time.sleep(2)
        assert gone.alive(), "a member that cannot hear anyone cannot know it was removed"
    finally:
        c.heal()
    assert gone.proc.wait(30) == 0
    assert "the member has been permanently removed from the cluster" in gone.log_text()
    for m in rest:
        ml = json.loads(m.etcdctl("member", "list", "-w", "json").stdout)["members"]
        assert sorted(x["name"] for x in ml) == sorted(x.name for x in rest)
        assert m.etcdctl("put", "k-" + m.name, "v").returncode == 0


@pytest.mark.parametrize("kind", ["etcd", "lskvd"])
def test_follower_behind_a_snapshot_catches_up_and_restarts(net_cluster, kind):
    """A follower down while the others write well past a snapshot
    (--snapshot-count 200) catches up when it comes back (the leader sends it
    a snapshot), has every write, and serves again after one more restart."""
    c = net_cluster(kind, extra=RAFT_FLAGS + ["--snapshot-count", "200"])
    leader = c.leader()
    f = next(m for m in c.members if m is not leader)
    f.kill()
    kv = rpc_pb2_grpc.KVStub(channel(leader))
    for i in range(1000):
        kv.Put(rpc_pb2.PutRequest(key=b"s/%04d" % i, value=b"v%d" % i), timeout=10)
    want = kv.Range(rpc_pb2.RangeRequest(key=b"s/", range_end=b"s0"), timeout=10)

    def caught_up():
        r = rpc_pb2_grpc.KVStub(channel(f)).Range(
            rpc_pb2.RangeRequest(key=b"s/", range_end=b"s0", serializable=True), timeout=5)
        return r.count == 1000 and list(r.kvs) == list(want.kvs)

    for attempt in ("restart after the snapshot", "one more restart"):
        f.launch()
        try:
            f.wait_ready(START_WAIT_S)
        except RuntimeError as e:
            # What a second try says too (the state the failed start left).
            f.kill()
            f.launch()
            try:
                f.wait_ready(START_WAIT_S)
                again = "a second start served"
            except RuntimeError as e2:
                again = "a second start failed too: %s" % str(e2).splitlines()[0]
                again += "".join("\n" + x for x in f.log_text(True).splitlines()
                                 if " error " in x)
            pytest.fail("%s: %s\n%s" % (attempt, "".join(
                x + "\n" for x in str(e).splitlines() if " error " in x), again))
        deadline = time.time() + 30
        while not caught_up():
            assert time.time() < deadline, "%s: the follower never caught up" % attempt
            time.sleep(0.2)
        f.stop()
    if c.kind == "lskvd":
        # The first restart installed the leader's snapshot and fetched what
        # it covers (statemachine/catchup.h).
        log = f.log_text()
        assert "held until this member has the ledger entries" in log, log[-3000:]
        assert "caught up: the held snapshot is restored" in log, log[-3000:]
    f.start()
    if c.kind == "lskvd":
        for m in c.members:
            m.stop()
        led = ledgers(c)
        assert len({len(v) for v in led.values()}) == 1, {n: len(v) for n, v in led.items()}
