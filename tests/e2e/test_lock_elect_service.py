"""The server-side Lock and Election gRPC services (v3lockpb.Lock,
v3electionpb.Election, issue 9) behave on lskvd as on etcd 3.4: the same
responses (ids and raft terms dropped, revisions relative to the start, lease
ids named by order of grant), the same gRPC codes and messages, a second
Lock waits for the first to go, Observe streams the leader's changes, and
the JSON gateway routes answer the same bodies.

The Python message classes are built at test time from proto/v3lock.proto and
proto/v3election.proto (protoc's descriptor set, loaded into a fresh
descriptor pool); the stubs are plain grpcio multi-callables.
"""
import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from conftest import grpc_channel, lskvd_only

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"
MESSAGES = [
    "etcdserverpb.LeaseGrantRequest", "etcdserverpb.LeaseGrantResponse",
    "etcdserverpb.LeaseRevokeRequest", "etcdserverpb.LeaseRevokeResponse",
    "etcdserverpb.RangeRequest", "etcdserverpb.RangeResponse",
    "etcdserverpb.PutRequest", "etcdserverpb.PutResponse",
    "etcdserverpb.TxnRequest", "etcdserverpb.TxnResponse", "etcdserverpb.RequestOp",
    "etcdserverpb.DeleteRangeRequest",
    "v3lockpb.LockRequest", "v3lockpb.LockResponse",
    "v3lockpb.UnlockRequest", "v3lockpb.UnlockResponse",
    "v3electionpb.CampaignRequest", "v3electionpb.CampaignResponse",
    "v3electionpb.LeaderKey", "v3electionpb.LeaderRequest", "v3electionpb.LeaderResponse",
    "v3electionpb.ResignRequest", "v3electionpb.ResignResponse",
    "v3electionpb.ProclaimRequest", "v3electionpb.ProclaimResponse",
]
METHODS = {  # name: (path, response type, server streaming)
    "Grant": ("/etcdserverpb.Lease/LeaseGrant", "LeaseGrantResponse", False),
    "Revoke": ("/etcdserverpb.Lease/LeaseRevoke", "LeaseRevokeResponse", False),
    "Range": ("/etcdserverpb.KV/Range", "RangeResponse", False),
    "Put": ("/etcdserverpb.KV/Put", "PutResponse", False),
    "Txn": ("/etcdserverpb.KV/Txn", "TxnResponse", False),
    "Lock": ("/v3lockpb.Lock/Lock", "LockResponse", False),
    "Unlock": ("/v3lockpb.Lock/Unlock", "UnlockResponse", False),
    "Campaign": ("/v3electionpb.Election/Campaign", "CampaignResponse", False),
    "Proclaim": ("/v3electionpb.Election/Proclaim", "ProclaimResponse", False),
    "Leader": ("/v3electionpb.Election/Leader", "LeaderResponse", False),
    "Observe": ("/v3electionpb.Election/Observe", "LeaderResponse", True),
    "Resign": ("/v3electionpb.Election/Resign", "ResignResponse", False),
}


class Messages:
    pass


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    out = tmp_path_factory.mktemp("lockelect-protos") / "set.pb"
    subprocess.run(["protoc", "--proto_path=%s" % PROTO_DIR, "--include_imports",
                    "--descriptor_set_out=%s" % out, "v3lock.proto", "v3election.proto"],
                   check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    m = Messages()
    for full in MESSAGES:
        setattr(m, full.split(".")[1], factory.GetPrototype(pool.FindMessageTypeByName(full)))
    return m


class Client:
    """One server's stubs plus the normalisation of its answers."""

    def __init__(self, server, pb):
        self.server, self.pb = server, pb
        self.ch = grpc_channel(server)
        for name, (path, resp, stream) in METHODS.items():
            make = self.ch.unary_stream if stream else self.ch.unary_unary
            setattr(self, name, make(path, request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=getattr(pb, resp).FromString))
        self.base = self.Range(pb.RangeRequest(key=b"\0")).header.revision
        self.leases = {}

    def grant(self, ttl=30):
        lid = self.Grant(self.pb.LeaseGrantRequest(TTL=ttl)).ID
        self.leases.setdefault(lid, "L%d" % len(self.leases))
        return lid

    def name_lease(self, lid):
        return self.leases.setdefault(lid, "L%d" % len(self.leases))

    def norm(self, obj):
        """A response or error as comparable data."""
        if isinstance(obj, grpc.RpcError):
            return ("error", obj.code().name, obj.details())
        d = json_format.MessageToDict(obj, preserving_proto_field_name=True)
        return self._norm(d)

    def _norm(self, d, field=None):
        if isinstance(d, dict):
            out = {}
            for k, v in d.items():
                if k in ("cluster_id", "member_id", "raft_term"):
                    continue
                out[k] = self._norm(v, k)
            return out
        if isinstance(d, list):
            return [self._norm(v) for v in d]
        if field in ("revision", "create_revision", "mod_revision", "rev"):
            return int(d) - self.base
        if field == "lease":
            return self.name_lease(int(d))
        if field in ("key", "name", "value"):
            raw = base64.b64decode(d)
            prefix, sep, tail = raw.rpartition(b"/")
            if sep and tail:
                try:
                    lid = int(tail.decode(), 16)
                except ValueError:
                    return raw.decode("latin-1")
                return prefix.decode("latin-1") + "/" + self.name_lease(lid)
            return raw.decode("latin-1")
        return d

    def call(self, name, req, **kw):
        try:
            return self.norm(getattr(self, name)(req, **kw))
        except grpc.RpcError as e:
            return self.norm(e)

    def raw(self, name, req, **kw):
        return getattr(self, name)(req, **kw)

    def keys(self, prefix):
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        r = self.Range(self.pb.RangeRequest(key=prefix, range_end=end))
        return sorted(self._norm(base64.b64encode(kv.key).decode(), "key") for kv in r.kvs)


def assert_as_etcd(pair, pb, transcript, check):
    """transcript(Client) on etcd passes check (the test means something
    there) and lskvd's equals it."""
    etcd, lskvd = pair
    want = transcript(Client(etcd, pb))
    assert check(want), want
    assert transcript(Client(lskvd, pb)) == want


def in_thread(fn, *a, **kw):
    box = {}

    def run():
        box["result"] = fn(*a, **kw)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# ------------------------------------------------------------- transcripts

def basics_transcript(c):
    pb = c.pb
    out = []
    out.append(("lock unknown lease", c.call("Lock", pb.LockRequest(name=b"p", lease=12345))))
    out.append(("lock lease 0", c.call("Lock", pb.LockRequest(name=b"p0", lease=0))))
    out.append(("unlock missing", c.call("Unlock", pb.UnlockRequest(key=b"nokey"))))
    out.append(("unlock empty", c.call("Unlock", pb.UnlockRequest(key=b""))))
    la = c.grant()
    out.append(("lock", c.call("Lock", pb.LockRequest(name=b"job", lease=la))))
    out.append(("lock same lease", c.call("Lock", pb.LockRequest(name=b"job", lease=la))))
    out.append(("lock empty name", c.call("Lock", pb.LockRequest(name=b"", lease=la))))
    out.append(("unlock", c.call("Unlock", pb.UnlockRequest(key=b"job/%x" % la))))
    out.append(("keys", c.keys(b"job/")))
    out.append(("leader none", c.call("Leader", pb.LeaderRequest(name=b"e"))))
    out.append(("proclaim no leader key", c.call("Proclaim", pb.ProclaimRequest(value=b"x"))))
    out.append(("resign no leader key", c.call("Resign", pb.ResignRequest())))
    lk = pb.LeaderKey(name=b"e", key=b"e/1", rev=5, lease=la)
    out.append(("proclaim not leader", c.call("Proclaim", pb.ProclaimRequest(leader=lk, value=b"x"))))
    out.append(("resign not leader", c.call("Resign", pb.ResignRequest(leader=lk))))
    out.append(("campaign unknown lease",
                c.call("Campaign", pb.CampaignRequest(name=b"e", lease=999, value=b"v"))))
    camp = c.raw("Campaign", pb.CampaignRequest(name=b"e", lease=la, value=b"v1"))
    out.append(("campaign", c.norm(camp)))
    out.append(("campaign again, new value",
                c.call("Campaign", pb.CampaignRequest(name=b"e", lease=la, value=b"v2"))))
    out.append(("leader", c.call("Leader", pb.LeaderRequest(name=b"e"))))
    out.append(("proclaim", c.call("Proclaim", pb.ProclaimRequest(leader=camp.leader, value=b"v3"))))
    out.append(("leader after proclaim", c.call("Leader", pb.LeaderRequest(name=b"e"))))
    out.append(("resign", c.call("Resign", pb.ResignRequest(leader=camp.leader))))
    out.append(("leader after resign", c.call("Leader", pb.LeaderRequest(name=b"e"))))
    out.append(("proclaim after resign",
                c.call("Proclaim", pb.ProclaimRequest(leader=camp.leader, value=b"v4"))))
    out.append(("campaign lease 0", c.call("Campaign", pb.CampaignRequest(name=b"f", value=b"z"))))
    g = c.raw("Campaign", pb.CampaignRequest(name=b"g", lease=la, value=b"same"))
    out.append(("campaign same value",
                c.call("Campaign", pb.CampaignRequest(name=b"g", lease=la, value=b"same"))))
    # A leader key with lease 0: the session grants a lease, the put takes it.
    lk0 = pb.LeaderKey(name=g.leader.name, key=g.leader.key, rev=g.leader.rev, lease=0)
    out.append(("proclaim lease 0", c.call("Proclaim", pb.ProclaimRequest(leader=lk0, value=b"p0"))))
    out.append(("leader g", c.call("Leader", pb.LeaderRequest(name=b"g"))))
    out.append(("resign lease 0", c.call("Resign", pb.ResignRequest(leader=lk0))))
    out.append(("leader g after", c.call("Leader", pb.LeaderRequest(name=b"g"))))
    return out


def test_requests_and_errors_as_etcd(pair, pb):
    assert_as_etcd(pair, pb, basics_transcript, lambda want: (
        ("leader none", ("error", "UNKNOWN", "election: no leader")) in want
        and ("proclaim not leader", ("error", "UNKNOWN", "election: not leader")) in want))


def exclusion_transcript(c):
    pb = c.pb
    out = []
    la, lb = c.grant(), c.grant()
    first = c.raw("Lock", pb.LockRequest(name=b"m", lease=la))
    out.append(("first", c.norm(first)))
    t, box = in_thread(c.call, "Lock", pb.LockRequest(name=b"m", lease=lb), timeout=30)
    time.sleep(1.0)
    out.append(("second waits", t.is_alive()))
    out.append(("keys", c.keys(b"m/")))
    c.Put(pb.PutRequest(key=b"m-other", value=b"x"))  # an unrelated write wakes nobody
    time.sleep(0.3)
    out.append(("still waits", t.is_alive()))
    out.append(("unlock", c.call("Unlock", pb.UnlockRequest(key=first.key))))
    t.join(20)
    out.append(("second", box.get("result")))
    out.append(("keys after", c.keys(b"m/")))
    return out


def test_second_lock_waits_for_unlock(pair, pb):
    assert_as_etcd(pair, pb, exclusion_transcript, lambda want: (
        want[1] == ("second waits", True)
        and want[3] == ("still waits", True)))


def revoke_transcript(c):
    """The holder's lease revoked: the next waiter gets the lock. A waiter
    whose own lease goes keeps waiting and, as in etcd 3.4, is answered once
    the keys before it are gone (its key no longer exists)."""
    pb = c.pb
    out = []
    la, lb, lc = c.grant(), c.grant(), c.grant()
    out.append(("a", c.call("Lock", pb.LockRequest(name=b"r", lease=la))))
    tb, bb = in_thread(c.call, "Lock", pb.LockRequest(name=b"r", lease=lb), timeout=30)
    time.sleep(0.5)
    tc, bc = in_thread(c.call, "Lock", pb.LockRequest(name=b"r", lease=lc), timeout=30)
    time.sleep(0.5)
    c.Revoke(pb.LeaseRevokeRequest(ID=lc))
    time.sleep(0.5)
    out.append(("c waits after its lease went", tc.is_alive()))
    c.Revoke(pb.LeaseRevokeRequest(ID=la))
    tb.join(20)
    out.append(("b after a's lease revoked", bb.get("result")))
    time.sleep(0.3)
    out.append(("c still waits", tc.is_alive()))
    c.Revoke(pb.LeaseRevokeRequest(ID=lb))
    tc.join(20)
    out.append(("c", bc.get("result")))
    out.append(("keys", c.keys(b"r/")))
    return out


def test_lock_released_by_lease_revoke(pair, pb):
    assert_as_etcd(pair, pb, revoke_transcript, lambda want: (
        want[1] == ("c waits after its lease went", True)))


def cancel_transcript(c):
    """A waiter that gives up (deadline, client cancel) leaves no key behind;
    a campaigner that gives up resigns."""
    pb = c.pb
    out = []
    la, lb, lc = c.grant(), c.grant(), c.grant()
    out.append(("a", c.call("Lock", pb.LockRequest(name=b"n", lease=la))))
    out.append(("b deadline", c.call("Lock", pb.LockRequest(name=b"n", lease=lb), timeout=1)))
    fut = c.Lock.future(pb.LockRequest(name=b"n", lease=lc))
    time.sleep(0.5)
    fut.cancel()
    time.sleep(0.5)
    out.append(("keys", c.keys(b"n/")))
    out.append(("campaign", c.call("Campaign", pb.CampaignRequest(name=b"ce", lease=la, value=b"a"))))
    out.append(("campaign deadline",
                c.call("Campaign", pb.CampaignRequest(name=b"ce", lease=lb, value=b"b"), timeout=1)))
    time.sleep(0.5)
    out.append(("campaign keys", c.keys(b"ce/")))
    return out


def test_cancelled_waiters_clean_up(pair, pb):
    assert_as_etcd(pair, pb, cancel_transcript, lambda want: (
        want[2] == ("keys", ["n/L0"])
        and want[5] == ("campaign keys", ["ce/L0"])))


def observe(c, name, timeout=None):
    """An Observe stream read by a thread into seen (normalised responses,
    then ("end", code)); started and given half a second to settle."""
    seen = []
    stream = c.Observe(c.pb.LeaderRequest(name=name), timeout=timeout)

    def read():
        try:
            for r in stream:
                seen.append(c.norm(r))
        except grpc.RpcError as e:
            seen.append(("end", e.code().name))
    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(0.5)
    return stream, seen, t


def election_transcript(c):
    pb = c.pb
    out = []
    stream, seen, tw = observe(c, b"pick")
    la, lb = c.grant(), c.grant()
    alice = c.raw("Campaign", pb.CampaignRequest(name=b"pick", lease=la, value=b"alice"))
    out.append(("alice", c.norm(alice)))
    tb, bb = in_thread(c.raw, "Campaign", pb.CampaignRequest(name=b"pick", lease=lb, value=b"bob"),
                       timeout=30)
    time.sleep(0.5)
    out.append(("bob waits", tb.is_alive()))
    # A pause after each write: etcd's observer re-watches after each change,
    # and a watch that starts behind the store answers with a later header.
    out.append(("proclaim", c.call("Proclaim", pb.ProclaimRequest(leader=alice.leader,
                                                                  value=b"alice2"))))
    time.sleep(0.3)
    out.append(("resign", c.call("Resign", pb.ResignRequest(leader=alice.leader))))
    tb.join(20)
    bob = bb.get("result")
    out.append(("bob", c.norm(bob)))
    out.append(("leader", c.call("Leader", pb.LeaderRequest(name=b"pick"))))
    out.append(("proclaim", c.call("Proclaim", pb.ProclaimRequest(leader=bob.leader, value=b"bob2"))))
    time.sleep(0.3)
    c.Revoke(pb.LeaseRevokeRequest(ID=lb))  # leadership ends with the lease
    time.sleep(0.3)
    out.append(("leader after revoke", c.call("Leader", pb.LeaderRequest(name=b"pick"))))
    lc = c.grant()
    out.append(("carol", c.call("Campaign", pb.CampaignRequest(name=b"pick", lease=lc, value=b"carol"))))
    time.sleep(0.5)
    stream.cancel()
    tw.join(10)
    out.append(("observed", seen))
    return out


def test_campaign_proclaim_resign_observe_as_etcd(pair, pb):
    assert_as_etcd(pair, pb, election_transcript, lambda want: (
        want[1] == ("bob waits", True)
        and len(want[-1][1]) == 6))


def observe_existing_transcript(c):
    """Observe starting while a leader exists gets it at once."""
    pb = c.pb
    la = c.grant()
    c.Campaign(pb.CampaignRequest(name=b"o", lease=la, value=b"first"))
    stream = c.Observe(pb.LeaderRequest(name=b"o"), timeout=3)
    got = []
    try:
        for r in stream:
            got.append(c.norm(r))
    except grpc.RpcError as e:
        got.append(("end", e.code().name))
    return got


def test_observe_sends_current_leader(pair, pb):
    assert_as_etcd(pair, pb, observe_existing_transcript, lambda want: (
        len(want) == 2
        and want[-1] == ("end", "DEADLINE_EXCEEDED")))


def observe_txn_transcript(c):
    """Leader keys written by plain puts and multi-key txns: a new leader
    is followed from the revision after the one it was found at."""
    pb = c.pb
    _, seen, tw = observe(c, b"t", timeout=5)

    def put(k, v):
        return pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))

    def delete(k):
        return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k))
    writes = [
        (c.Put, pb.PutRequest(key=b"tx", value=b"outside")),
        (c.Txn, pb.TxnRequest(success=[put(b"t/b", b"1"), put(b"t/a", b"2")])),
        (c.Put, pb.PutRequest(key=b"t/b", value=b"3")),
        (c.Put, pb.PutRequest(key=b"t/a", value=b"4")),
        (c.Txn, pb.TxnRequest(success=[delete(b"t/b"), put(b"t/a", b"5")])),
        (c.Txn, pb.TxnRequest(success=[put(b"t/a", b"6"), put(b"t/c", b"7")])),
        (c.Txn, pb.TxnRequest(success=[delete(b"t/a"), put(b"t/c", b"8")])),
        (c.Put, pb.PutRequest(key=b"t/c", value=b"9")),
    ]
    for fn, req in writes:  # paced as in election_transcript
        fn(req)
        time.sleep(0.3)
    tw.join(10)
    return seen


def test_observe_follows_txns_as_etcd(pair, pb):
    assert_as_etcd(pair, pb, observe_txn_transcript, lambda want: (
        want[-1] == ("end", "DEADLINE_EXCEEDED")))


# ------------------------------------------------------------- JSON gateway

def curl(server, path, body):
    cmd = ["curl", "-sS", "-X", "POST", "-o", "-", "-w", "\n%{http_code}", server.url + path,
           "--data-binary", json.dumps(body)]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.decode().rpartition("\n")
    return int(code), json.loads(text)


def b64(b):
    return base64.b64encode(b).decode()


def gateway_transcript(s, c):
    out = []

    def post(path, body):
        code, obj = curl(s, path, body)
        out.append((path, code, c._norm(obj)))
        return obj
    lid = c.grant()
    post("/v3/lock/lock", {"name": b64(b"gw"), "lease": str(lid)})
    post("/v3/lock/lock", {"name": b64(b"gw"), "lease": "1"})
    post("/v3/lock/unlock", {"key": b64(b"gw/%x" % lid)})
    post("/v3/election/leader", {"name": b64(b"gwe")})
    camp = post("/v3/election/campaign", {"name": b64(b"gwe"), "lease": str(lid),
                                          "value": b64(b"v1")})
    post("/v3/election/leader", {"name": b64(b"gwe")})
    post("/v3/election/proclaim", {"value": b64(b"x")})
    post("/v3/election/proclaim", {"leader": camp["leader"], "value": b64(b"v2")})
    post("/v3/election/resign", {"leader": camp["leader"]})
    post("/v3/election/proclaim", {"leader": camp["leader"], "value": b64(b"v3")})
    post("/v3beta/election/leader", {"name": b64(b"gwe")})
    return out


def test_gateway_routes_as_etcd(pair, pb):
    etcd, lskvd = pair
    want = gateway_transcript(etcd, Client(etcd, pb))
    assert want[0][1] == 200 and want[3][1] == 500, want
    assert gateway_transcript(lskvd, Client(lskvd, pb)) == want


# ------------------------------------------------------------- lskvd's bound

CONC_MAX_CALLS = 4096  # api/concurrency_service.c


@lskvd_only
def test_calls_beyond_the_bound_are_refused(lskvd, pb):
    """Waiting Lock/Campaign calls and Observe streams are held in memory:
    beyond CONC_MAX_CALLS at once a call gets etcd's "too many requests";
    once one goes, calls are served again."""
    # Own connections (grpcio shares one per target otherwise), 2048
    # streams each: the server's HTTP/2 limit is 4096 per connection.
    channels = [grpc.insecure_channel(lskvd.endpoint, [("grpc.use_local_subchannel_pool", 1)])
                for _ in range(3)]
    c = Client(lskvd, pb)
    c.Campaign(pb.CampaignRequest(name=b"bound", lease=c.grant(), value=b"v"))
    observe = [ch.unary_stream(METHODS["Observe"][0],
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=pb.LeaderResponse.FromString)
               for ch in channels[:2]]
    leader = channels[2].unary_unary(METHODS["Leader"][0],
                                     request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=pb.LeaderResponse.FromString)

    def ask():
        try:
            return leader(pb.LeaderRequest(name=b"bound"), timeout=10).kv.value
        except grpc.RpcError as e:
            return (e.code().name, e.details())
    held = [observe[i % 2](pb.LeaderRequest(name=b"bound")) for i in range(CONC_MAX_CALLS - 1)]
    for s in held:
        assert next(s).kv.value == b"v"  # the server holds this one
    assert ask() == b"v"  # the last call within the bound
    held.append(observe[0](pb.LeaderRequest(name=b"bound")))
    assert next(held[-1]).kv.value == b"v"
    assert ask() == ("RESOURCE_EXHAUSTED", "etcdserver: too many requests")
    held.pop(0).cancel()
    deadline = time.time() + 30
    while ask() != b"v":
        assert time.time() < deadline
        time.sleep(0.1)
    for s in held:
        s.cancel()
