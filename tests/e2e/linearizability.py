"""A linearizability checker for histories of single-key register operations
(Wing & Gong's search with Lowe's and Porcupine's memoization of
(linearized set, state)), used by test_cluster_faults.py.

An Op is one client call on one key: put(value), get() -> value or None,
delete() -> number deleted (or None if not known), cas(expect, value) ->
succeeded (a Txn comparing the value; expect None means "the key does not
exist"). Each has the times it was invoked and returned. An op whose outcome
is not known (a timeout, an unavailable member: it may or may not have taken
effect) has ret=None: it may take effect at any time after its invocation,
and its result constrains nothing. A read that failed is simply left out.

check(history) partitions by key (a register per key is P-compositional) and
returns a list of Violation (empty: linearizable). check_serializable() checks
stale-but-allowed reads: each value read must have been written by a put or
cas invoked before the read returned (never forged, never from the future).
"""
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

PUT, GET, DELETE, CAS = "put", "get", "delete", "cas"


@dataclass
class Op:
    kind: str                 # PUT, GET, DELETE, CAS
    key: str
    invoke: float
    ret: Optional[float]      # None: outcome unknown (may take effect at any later time)
    value: Any = None         # PUT/CAS: value written
    expect: Any = None        # CAS: value compared (None: key absent)
    result: Any = None        # GET: value read (None: absent); DELETE: count or None; CAS: bool
    client: Any = None        # who issued it (for reports)
    rev: Optional[int] = None  # response header revision, if any
    member: Any = None

    def __str__(self):
        r = "?" if self.ret is None else "%.3f" % self.ret
        what = {PUT: "put(%r)" % (self.value,), GET: "get() -> %r" % (self.result,),
                DELETE: "delete() -> %r" % (self.result,),
                CAS: "cas(%r, %r) -> %r" % (self.expect, self.value, self.result)}[self.kind]
        return "[%.3f, %s] %s %s %s%s" % (self.invoke, r, self.client, self.key, what,
                                          "" if self.rev is None else " rev=%d" % self.rev)


@dataclass
class Violation:
    key: str
    reason: str
    ops: list = field(default_factory=list)   # the key's history, sorted by invocation
    stuck: list = field(default_factory=list)  # the longest prefix found, then the ops that failed

    def __str__(self):
        lines = ["key %r: %s" % (self.key, self.reason),
                 "  longest linearized prefix (last 12):"]
        lines += ["    " + str(o) for o in self.stuck[-12:]]
        lines.append("  history (%d ops, up to 40 shown):" % len(self.ops))
        lines += ["    " + str(o) for o in self.ops[:40]]
        return "\n".join(lines)


def step(state, op):
    """The register model: (ok, new state) for op applied in state."""
    unknown = op.ret is None
    if op.kind == PUT:
        return True, op.value
    if op.kind == GET:
        return unknown or op.result == state, state
    if op.kind == DELETE:
        ok = unknown or op.result is None or op.result == (0 if state is None else 1)
        return ok, None
    if op.kind == CAS:
        hit = state == op.expect
        if unknown:
            return True, (op.value if hit else state)
        if op.result != hit:
            return False, state
        return True, (op.value if hit else state)
    raise ValueError("unknown op kind %r" % op.kind)


class _Entry:
    __slots__ = ("op", "id", "is_call", "match", "prev", "next", "time")

    def __init__(self, op, i, is_call, time):
        self.op, self.id, self.is_call, self.time = op, i, is_call, time
        self.match = self.prev = self.next = None


def check_key(ops, init=None, max_steps=2_000_000):
    """(True, None) if ops (one key) are linearizable from state init, else
    (False, longest linearized prefix). Raises TimeoutError past max_steps."""
    entries = []
    for i, op in enumerate(ops):
        c = _Entry(op, i, True, op.invoke)
        r = _Entry(op, i, False, math.inf if op.ret is None else op.ret)
        c.match = r
        entries += [c, r]
    # By time; at equal times calls first (the lenient reading: they overlap).
    entries.sort(key=lambda e: (e.time, 0 if e.is_call else 1))
    head = _Entry(None, -1, False, -math.inf)
    prev = head
    for e in entries:
        prev.next, e.prev = e, prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    cache = set()
    calls = []  # (entry, state before it)
    state, linearized = init, 0
    best = []
    e = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            raise TimeoutError("linearizability search over %d ops passed %d steps"
                               % (len(ops), max_steps))
        if e.is_call:
            ok, new_state = step(state, e.op)
            if ok:
                nl = linearized | (1 << e.id)
                k = (nl, new_state)
                if k not in cache:
                    cache.add(k)
                    calls.append((e, state))
                    if len(calls) > len(best):
                        best = [c.op for c, _ in calls]
                    state, linearized = new_state, nl
                    lift(e)
                    e = head.next
                    continue
            e = e.next
        else:
            # A return reached: some op that had to take effect before it could not.
            if not calls:
                pending = [x.op for x in _walk(head) if x.is_call][:4]
                return False, best + ["-- cannot linearize next: --"] + pending
            top, state = calls.pop()
            linearized &= ~(1 << top.id)
            unlift(top)
            e = top.next
    return True, None


def _walk(head):
    e = head.next
    while e is not None:
        yield e
        e = e.next


def unobserved_unknown_writes(ops):
    """Writes of unknown outcome whose value no read or CAS ever saw."""
    seen = {o.result for o in ops if o.kind == GET}
    seen |= {o.expect for o in ops if o.kind == CAS and o.result is not False}
    return [o for o in ops if o.ret is None and o.kind in (PUT, CAS) and o.value not in seen]


def check(history, max_steps=2_000_000):
    """Violations (one per key that is not linearizable) of history, a list of Op."""
    by_key = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    out = []
    for key, ops in sorted(by_key.items()):
        ops.sort(key=lambda o: o.invoke)
        # An unknown write nobody saw may always be placed last (after every
        # other op: it returns at infinity), so the history without it being
        # linearizable is enough; each one left open would otherwise double
        # the search. Only if that fails is the full history searched.
        drop = set(map(id, unobserved_unknown_writes(ops)))
        pruned = [o for o in ops if id(o) not in drop]
        try:
            ok, prefix = check_key(pruned, max_steps=max_steps)
            if not ok and drop:
                ok, prefix = check_key(ops, max_steps=max_steps)
        except TimeoutError as e:
            out.append(Violation(key, "undecided: %s" % e, ops, []))
            continue
        if not ok:
            out.append(Violation(key, "not linearizable", ops, prefix))
    return out


def check_serializable(reads, history):
    """Serializable reads (Op GET, not part of the linearizable history) that
    return a value no put/cas on their key had been invoked with before the
    read returned. Returns a list of (read, reason)."""
    written = defaultdict(dict)  # key -> value -> earliest invoke
    for op in history:
        if op.kind in (PUT, CAS):
            t = written[op.key].get(op.value)
            if t is None or op.invoke < t:
                written[op.key][op.value] = op.invoke
    bad = []
    for r in reads:
        if r.result is None:
            continue
        t = written[r.key].get(r.result)
        if t is None:
            bad.append((r, "value never written (forged)"))
        elif t > r.ret:
            bad.append((r, "value written only after the read returned"))
    return bad


def lost_acked_writes(history, final):
    """Acknowledged puts whose loss the final state shows: final[key] (the
    value read at the end, None if absent) must come from a write that no
    acknowledged write on the key followed in real time. Returns messages."""
    by_key = defaultdict(list)
    for op in history:
        if op.kind in (PUT, DELETE, CAS):
            by_key[op.key].append(op)
    msgs = []
    for key, ops in by_key.items():
        if key not in final:
            continue
        v = final[key]
        acked = [o for o in ops if o.ret is not None and
                 (o.kind != CAS or o.result)]
        if v is None:
            sources = [o for o in ops if o.kind == DELETE]
        else:
            sources = [o for o in ops if o.kind in (PUT, CAS) and o.value == v]
        if not sources:
            if v is None and acked:
                msgs.append("key %r ends absent, but acknowledged %s put it and nothing "
                            "deleted it" % (key, acked[-1]))
            elif v is not None:
                msgs.append("key %r ends with %r, which no write produced" % (key, v))
            continue
        # The last moment the final value can have been written ...
        last = max(math.inf if s.ret is None else s.ret for s in sources)
        # ... and an acknowledged write that started after it must have replaced it.
        later = [o for o in acked if o.invoke > last]
        if later:
            msgs.append("key %r ends with %r, but acknowledged %s came after every "
                        "write of it (lost)" % (key, v, later[-1]))
    return msgs
