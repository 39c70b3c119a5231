"""Differential test of leases and watch: random sequences of lease grants,
puts with leases, revokes, txns, deletes and compactions, with watchers on
random ranges and start revisions created along the way, sent to etcd and
lskvd alike. Responses must be equal, and every watcher must get the same
events on both, field by field (revisions, prev_kv included), and the same
created / cancelled / compacted answers. Events are compared per watcher as
one list: etcd and lskvd may cut a catch-up into responses differently."""
import time

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import rpc_pb2
from test_differential import (EXAMPLES, Ctx, build_request_op, call, key, operation,
                               range_end, show, value)
from test_watch import Session, shape

N_LEASES = 3
lease_ref = st.integers(0, N_LEASES)  # N_LEASES: a lease that was never granted

grant_op = st.tuples(st.just("grant"), st.integers(0, N_LEASES - 1))
revoke_op = st.tuples(st.just("revoke"), lease_ref)
lput_op = st.tuples(st.just("lput"), key, value, lease_ref, st.booleans())
ltxn_op = st.tuples(st.just("ltxn"), st.lists(st.tuples(key, value, lease_ref), min_size=1,
                                               max_size=3))
# Half the watchers see the whole example's namespace (prefix of b"").
watch_key = st.one_of(st.tuples(key, range_end), st.just((b"", "prefix")))
watch_op = st.builds(lambda kr, off, prev, f: ("watch", kr[0], kr[1], off, prev, f), watch_key,
                     st.one_of(st.none(), st.integers(-2, 10)), st.booleans(),
                     st.sampled_from([(), (), (0,), (1,)]))
WHOLE_NAMESPACE_WITH_PREV = ("watch", b"", "prefix", None, True, ())
step = st.one_of(operation, operation, grant_op, revoke_op, lput_op, lput_op, lput_op, ltxn_op,
                 watch_op)


def lease_id(n, i):
    return n * 100 + i + 1


def run_step(s, c, n, op):
    """One step on server s; returns a comparable answer."""
    kv = s.kv()
    what = op[0]
    if what == "grant":
        return call_lease(s, "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=lease_id(n, op[1]),
                                                                       TTL=1000))
    if what == "revoke":
        return call_lease(s, "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lease_id(n, op[1])))
    if what == "lput":
        _, k, v, lease, prev = op
        return call(kv, "put", rpc_pb2.PutRequest(key=c.k(k), value=v, lease=lease_id(n, lease),
                                                  prev_kv=prev))
    if what == "ltxn":
        req = rpc_pb2.TxnRequest()
        for k, v, lease in op[1]:
            req.success.add().request_put.CopyFrom(
                rpc_pb2.PutRequest(key=c.k(k), value=v, lease=lease_id(n, lease)))
        return call(kv, "txn", req)
    what, req = build_request_op(c, op)
    return call(kv, what, req)


def call_lease(s, method, req):
    stub = s.lease_stub
    try:
        r = getattr(stub, method)(req, timeout=30)
        r.header.Clear()
        return "ok", r
    except grpc.RpcError as e:
        return e.code(), e.details()


def watch_events(responses):
    """Per watcher: control answers and the flat list of its events."""
    out = {}
    for r in responses:
        x = shape(r)
        if not isinstance(x, tuple):
            out.setdefault("errors", []).append(x)
            continue
        w = out.setdefault(x[1], {"control": [], "events": []})
        if x[2] or x[3] or x[4] or x[5]:
            w["control"].append((x[2], x[3], x[4], x[5]))
        w["events"].extend(x[6])
    return out


def test_random_lease_and_watch_sequences(server_factory):
    state = {"n": 0}

    def fresh():
        servers = (server_factory("etcd"), server_factory("lskvd"))
        for s in servers:
            from etcd3.etcdrpc import rpc_pb2_grpc
            s.lease_stub = rpc_pb2_grpc.LeaseStub(s.channel())
        state["servers"] = servers

    fresh()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    # Watchers first (live ones see the writes), leases granted, the random
    # steps, then watchers from start revisions (history).
    @given(st.lists(watch_op, min_size=1, max_size=3), st.lists(step, min_size=5, max_size=25),
           st.lists(watch_op.filter(lambda w: w[3] is not None), max_size=3))
    def run(first_watchers, middle, last_watchers):
        # One watcher on the whole namespace with prev_kv in every example, so
        # the comparison below always covers previous values, whatever is drawn.
        steps = ([WHOLE_NAMESPACE_WITH_PREV] + first_watchers +
                 [("grant", i) for i in range(N_LEASES - 1)] + middle + last_watchers)
        state["n"] += 1
        n = state["n"]
        servers = state["servers"]
        sessions = [Session(s) for s in servers]
        seen = ([], [])  # responses read while waiting for creations
        try:
            base = servers[0].kv().Range(rpc_pb2.RangeRequest(key=b"x")).header.revision
            c = Ctx(b"wx%04d/" % n, base)
            for i, op in enumerate(steps):
                if op[0] == "watch":
                    _, k, e, off, prev, filters = op
                    req = rpc_pb2.WatchCreateRequest(
                        key=c.k(k), range_end=c.end(k, e),
                        start_revision=0 if off is None else max(1, base + off),
                        prev_kv=prev, filters=list(filters))
                    # Each creation is answered before the next write, so both
                    # servers place it at the same revision.
                    for w, got_so_far in zip(sessions, seen):
                        w.send(create_request=req)
                        while True:
                            r = w.recv(10)
                            assert r is not None, "no answer to a watch creation"
                            got_so_far.append(r)
                            if isinstance(r, grpc.RpcError) or r.created:
                                break
                    if off is not None:
                        # etcd catches a watcher up from history in a loop
                        # that runs every 100 ms: let it run before the next
                        # write (or compaction) races it.
                        time.sleep(0.3)
                    continue
                ref, got = (run_step(s, c, n, op) for s in servers)
                assert got == ref, "step %d %s\n etcd: %s\nlskvd: %s" % (i, op, show(ref),
                                                                         show(got))
            want, got = (watch_events(before + w.drain(1.0))
                         for w, before in zip(sessions, seen))
            state["events"] = state.get("events", 0) + sum(
                len(w["events"]) for k, w in want.items() if k != "errors")
            state["prev"] = state.get("prev", 0) + sum(
                1 for k, w in want.items() if k != "errors" for e in w["events"] if e[2])
            assert got == want, "watch events differ:\n etcd: %s\nlskvd: %s" % (want, got)
        except BaseException:
            for s in servers:
                s.kill()
            fresh()
            raise
        finally:
            for w in sessions:
                w.close()

    run()
    print("compared %d events, %d with prev_kv" % (state.get("events", 0), state.get("prev", 0)))
    # The comparison saw real traffic: events, some with a previous value.
    assert state.get("events", 0) > 50 and state.get("prev", 0) > 5, state
