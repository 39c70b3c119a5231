"""A host attacker rewrites the raft log (libraft's CRCs recomputed, see
raftlog.py), with or without cutting the ledger to match. lskvd must refuse
to start (non-zero exit before answering anyone, and an ERROR line
"refusing to start: <file or raft entry N>: <reason>") or answer the
affected read with DATA_LOSS; it must never answer with a state other than
the acknowledged one, not even while it starts (a client reads in a tight
loop from the moment the process is launched); and where the attacker changed
the ledger's frames (not just cut its tail, which an append-only log audited
alone cannot show), `lskvctl ledger audit` must fail.

Issue 7: entries bound to their raft index, cluster id and a chain over
their predecessor; snapshots bound to index, term and ledger position;
nothing served before the reloaded state is verified; the raft log replay
checked entry by entry against the ledger.
"""
import os
import re
import shutil
import subprocess
import time

import grpc
import pytest

from conftest import LSKVCTL, dir_state, lskvd_only, rpc_pb2, rpc_pb2_grpc
import ledgerfile
from raftlog import RaftLog

pytestmark = [lskvd_only, pytest.mark.slow]

PREFIX = b"t/"
K, K2 = b"t/k", b"t/k2"
# Values of distinct lengths, so their sealed raft entries can be told apart
# by size alone (entries are sealed; the payload grows with the value).
LEN = dict(old=2000, a=2400, b=2800, c=3200, fork=3600, new=4000)
WINDOW = 300  # sealed entry = value + key + envelope + AEAD overhead + padding
SIG_MS = 3000


def value(tag):
    body = ("%s-" % tag).encode()
    return (body * (LEN[tag] // len(body) + 1))[:LEN[tag]]


class Acked:
    """What clients were told: key -> (value, mod_revision)."""

    def __init__(self, server):
        self.server, self.kv, self.state = server, server.kv(), {}

    def put(self, key, val):
        r = self.kv.Put(rpc_pb2.PutRequest(key=key, value=val), timeout=20)
        self.state[key] = (val, r.header.revision)
        return r.header.revision

    def expected(self):
        return sorted((k, v, rev) for k, (v, rev) in self.state.items())


def find_put(log, tag):
    hits = [e.index for e in log.commands() if LEN[tag] <= len(e.payload) < LEN[tag] + WINDOW]
    assert len(hits) == 1, "raft entries of the %r put: %s" % (tag, hits)
    return hits[0]


def wait_for(cond, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def ledger_frames(server):
    return ledgerfile.frames(server.data_dir / "ledger")


def wait_signed(server):
    """Until the ledger's last frame is a signature (everything before is signed)."""
    wait_for(lambda: ledger_frames(server) and ledger_frames(server)[-1].type == 5,
             "a signature over the whole ledger")


def base(acked, n=6):
    for i in range(n):
        acked.put(PREFIX + b"base/%02d" % i, b"b%02d" % i)
    acked.put(K, value("old"))


def tail(acked):
    """Three quick puts after the last signature (unsigned)."""
    acked.put(K, value("a"))
    acked.put(K, value("b"))
    acked.put(K2, value("c"))


def make_node(server_factory, extra=()):
    return server_factory("lskvd", extra=["--sig-ms-interval", str(SIG_MS), *extra])


def signed_then_tail(server_factory, stop="term"):
    """A node whose ledger is signed up to the 'old' put and holds an unsigned
    tail a, b, c; stopped (SIGTERM), or killed (the log's tail then stays in
    an open, preallocated segment)."""
    s = make_node(server_factory)
    acked = Acked(s)
    base(acked)
    wait_signed(s)
    tail(acked)
    if stop == "kill":
        s.kill()
    else:
        s.stop_cleanly()
    frames = ledger_frames(s)
    last_sig = max(f.leaf for f in frames if f.type == 5)
    log = RaftLog(s.data_dir / "raft")
    a_leaf = [f.leaf for f in frames if f.index == find_put(log, "a")]
    assert a_leaf and a_leaf[0] > last_sig, "the tail must be unsigned for this test"
    return s, acked


def leaves_before(server, raft_index):
    return sum(1 for f in ledger_frames(server) if f.index < raft_index)


def cut_ledger_before(server, raft_index):
    ledgerfile.cut(server.data_dir / "ledger", leaves_before(server, raft_index))


# --- starting while reading ---------------------------------------------------

def launch(s):
    """Starts s without waiting for it (what Server.start does, minus the wait)."""
    s._log_offset = s.log_path.stat().st_size if s.log_path.exists() else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    with open(s.log_path, "ab") as log:
        s.proc = subprocess.Popen(s.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                  env=env, start_new_session=True)


def start_reading(s, after_ready=1.5, timeout=60):
    """Launches s and reads PREFIX in a tight loop (linearizable and
    serializable Ranges) until it exits, or until after_ready seconds after
    it logged ready. Returns [(code, response-or-details)] of every answer
    lskvd gave (connection failures are not answers)."""
    launch(s)
    # A fresh channel after each failed connection: a channel that failed
    # to connect backs off and would miss the moments right after the port
    # opens.
    def connect():
        ch = grpc.insecure_channel(s.endpoint, [("grpc.enable_retries", 0)])
        return ch, rpc_pb2_grpc.KVStub(ch)
    ch, kv = connect()
    answers, ready_at, deadline = [], None, time.time() + timeout
    serializable = False
    try:
        while time.time() < deadline:
            if s.proc.poll() is not None:
                break
            if ready_at is None and b"ready to serve client requests" in s.log_text(True).encode():
                ready_at = time.time()
            if ready_at is not None and time.time() - ready_at > after_ready:
                break
            serializable = not serializable
            try:
                r = kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=b"t0",
                                                  serializable=serializable), timeout=0.5)
                answers.append((grpc.StatusCode.OK, r))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    ch.close()
                    ch, kv = connect()
                elif e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    answers.append((e.code(), e.details()))
    finally:
        ch.close()
    if s.proc.poll() is None and ready_at is None:
        s.kill()
        raise AssertionError("lskvd neither exited nor served within %ss; log:\n%s"
                             % (timeout, s.log_text(True)[-3000:]))
    return answers


REFUSAL = re.compile(r"\berror\b.*refusing to start: (.*)", re.IGNORECASE)


def refusal_line(s):
    m = REFUSAL.search(s.log_text(True))
    return m.group(1) if m else None


def audit(s):
    return subprocess.run([LSKVCTL, "ledger", "audit", str(s.data_dir / "ledger"),
                           "--service-cert", str(s.data_dir / "identity" / "service.pem"),
                           "--ledger-secret", str(s.data_dir / "ledger.secret"),
                           "--no-progress"], capture_output=True, text=True, timeout=120)


def check_outcome(s, acked, forged, ledger_changed=False):
    """The contract of every case. forged: values that must never be read."""
    before = dir_state(s.data_dir)
    answers = start_reading(s)
    log = s.log_text(True)
    ok = [r for code, r in answers if code == grpc.StatusCode.OK]
    for r in ok:
        got = sorted((kv.key, kv.value, kv.mod_revision) for kv in r.kvs)
        for k, v, _ in got:
            assert v not in forged, "forged value of %r served: %r..." % (k, v[:16])
        assert got == acked.expected(), (
            "lskvd answered a state other than the acknowledged one (lost or replayed "
            "writes); log tail:\n%s" % log[-2000:])
    refused = s.proc.poll() is not None
    if refused:
        assert s.proc.returncode != 0, "lskvd exited 0 on a tampered data dir"
        assert answers == [], "lskvd answered %d reads before refusing: %s" % (
            len(answers), [c for c, _ in answers][:5])
        why = refusal_line(s)
        assert why is not None, "no 'refusing to start: ' ERROR line; log tail:\n" + log[-2000:]
        assert re.search(r"raft entry \d+", why) or str(s.data_dir) in why, (
            "the refusal names neither a file nor a raft entry: " + why)
        assert dir_state(s.data_dir) == before, "the refused start changed files"
    else:
        code, details = rpc_call(s, K)
        assert code == grpc.StatusCode.DATA_LOSS, (
            "lskvd started on a tampered raft log and answered %s for the affected key; "
            "log tail:\n%s" % (code, log[-2000:]))
        s.kill()
    if ledger_changed == "audit-fails":
        # The attacker's change to the ledger itself is caught offline. (A
        # cut tail is not: an append-only log audited alone cannot tell,
        # docs/ledger-format.md section 7.)
        a = audit(s)
        assert a.returncode != 0, "the changed ledger audits clean: %s" % a.stdout
    return refused


def rpc_call(s, key):
    try:
        r = s.kv().Range(rpc_pb2.RangeRequest(key=key), timeout=10)
        return grpc.StatusCode.OK, r
    except grpc.RpcError as e:
        return e.code(), e.details()


# --- the cases -------------------------------------------------------------------

@pytest.mark.parametrize("ledger", ["untouched", "cut"])
@pytest.mark.parametrize("stop", ["term", "kill"])
def test_duplicated_entry(server_factory, ledger, stop):
    """An earlier Put copied to the end of the log: replaying it would bring
    back the superseded value at a new revision."""
    s, acked = signed_then_tail(server_factory, stop)
    log = RaftLog(s.data_dir / "raft")
    assert (stop == "kill") == log.segments[-1].is_open
    old = find_put(log, "old")
    log.duplicate(old)
    log.write()
    if ledger == "cut":  # drop the unsigned tail: raft replays it, then the copy
        cut_ledger_before(s, find_put(log, "a"))
    check_outcome(s, acked, [value("old")])


@pytest.mark.parametrize("ledger", ["untouched", "cut", "swapped"])
def test_swapped_entries(server_factory, ledger):
    """Two unsigned Puts of one key swapped: the older value would win."""
    s, acked = signed_then_tail(server_factory)
    log = RaftLog(s.data_dir / "raft")
    a, b = find_put(log, "a"), find_put(log, "b")
    log.swap(a, b)
    log.write()
    changed = False
    if ledger == "cut":
        cut_ledger_before(s, a)
    elif ledger == "swapped":
        ledgerfile.swap(s.data_dir / "ledger", leaves_before(s, a), leaves_before(s, b))
        changed = "audit-fails"
    check_outcome(s, acked, [], changed)


@pytest.mark.parametrize("ledger", ["untouched", "cut"])
def test_dropped_entry_in_the_middle(server_factory, ledger):
    """The Put of b dropped, later entries renumbered: b is lost and c takes
    its revision."""
    s, acked = signed_then_tail(server_factory)
    log = RaftLog(s.data_dir / "raft")
    b = find_put(log, "b")
    log.drop(b)
    log.write()
    if ledger == "cut":
        cut_ledger_before(s, b)
    check_outcome(s, acked, [])


@pytest.mark.parametrize("ledger", ["untouched", "cut"])
@pytest.mark.parametrize("at", ["b", "own-index"])
def test_spliced_from_a_fork(server_factory, tmp_path, ledger, at):
    """A copy of the data dir (same keys, same history up to the copy) took
    another write; that sealed entry is spliced into the original's log, in
    place of the Put of b or at its own raft index (where index, term, key
    and its chain's predecessor all match: only the entry after it can
    tell)."""
    s = make_node(server_factory)
    acked = Acked(s)
    base(acked)
    wait_signed(s)
    s.stop_cleanly()
    fork = server_factory("lskvd", start=False, extra=["--sig-ms-interval", str(SIG_MS)])
    shutil.copytree(s.data_dir, fork.data_dir)
    fork.start()
    Acked(fork).put(K, value("fork"))
    fork.stop_cleanly()
    s.start()
    tail(acked)
    s.stop_cleanly()
    log, flog = RaftLog(s.data_dir / "raft"), RaftLog(fork.data_dir / "raft")
    f = find_put(flog, "fork")
    to = find_put(log, "b") if at == "b" else f
    assert to < log.last_index()
    log.splice(flog, f, f, at=to)
    log.write()
    if ledger == "cut":
        cut_ledger_before(s, to)
    check_outcome(s, acked, [value("fork")])


def snapshot_metas(s):
    return sorted(n for n in os.listdir(s.data_dir / "raft") if n.endswith(".meta"))


@pytest.mark.parametrize("ledger", ["untouched", "cut"])
def test_older_snapshot_under_newer_name(server_factory, ledger):
    """The older snapshot (key = old) renamed over the newer one (key = new):
    libraft loads the old state as of the newer index and replays only what
    follows, so the write of new would be lost."""
    s = server_factory("lskvd", extra=["--snapshot-count", "8"])
    acked = Acked(s)
    acked.put(K, value("old"))
    i = 0

    def fill_until_new_snapshot():
        nonlocal i
        before = snapshot_metas(s)
        while snapshot_metas(s) == before:
            acked.put(PREFIX + b"fill/%03d" % i, b"f%d" % i)
            i += 1
            assert i < 400, "no snapshot"
        time.sleep(0.2)

    fill_until_new_snapshot()
    acked.put(K, value("new"))
    fill_until_new_snapshot()
    s.stop_cleanly()
    log = RaftLog(s.data_dir / "raft")
    older, newer = log.snapshots[-2], log.snapshots[-1]
    new = find_put(log, "new")
    assert older.index < new <= newer.index, (older, new, newer)
    log.snapshot_alias(older, newer)
    log.write()
    if ledger == "cut":  # the ledger as of the older snapshot
        cut_ledger_before(s, older.index + 1)
    check_outcome(s, acked, [value("old")])


def test_raft_log_lost_its_tail(server_factory):
    """The raft log ends before the ledger's last entry: an acknowledged
    write is gone from the log. lskvd must refuse, and answer nobody first."""
    s, acked = signed_then_tail(server_factory)
    log = RaftLog(s.data_dir / "raft")
    b = find_put(log, "b")
    assert max(f.index for f in ledger_frames(s)) > b - 1
    log.truncate(b - 1)
    log.write()
    refused = check_outcome(s, acked, [])
    assert refused, "lskvd started with a raft log shorter than its ledger"


def test_untouched_data_dir_starts(server_factory):
    """The control: the same steps without tampering start and serve."""
    s, acked = signed_then_tail(server_factory)
    RaftLog(s.data_dir / "raft").write(everything=True)
    answers = start_reading(s)
    assert s.proc.poll() is None, s.log_text(True)[-2000:]
    ok = [r for c, r in answers if c == grpc.StatusCode.OK]
    assert ok, "no answer after ready"
    for r in ok:
        assert sorted((x.key, x.value, x.mod_revision) for x in r.kvs) == acked.expected()
    assert refusal_line(s) is None
    s.stop_cleanly()
    assert audit(s).returncode == 0
