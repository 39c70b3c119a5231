"""The checker of linearizability.py on hand-made histories: linearizable
ones pass, stale reads, lost writes, forged values and impossible CAS results
are caught (so the fault tests' "0 violations" can fail)."""
import random

import pytest

from linearizability import (CAS, DELETE, GET, PUT, Op, check, check_key,
                            check_serializable, lost_acked_writes)


def put(v, t0, t1, k="k", c="c1"):
    return Op(PUT, k, t0, t1, value=v, client=c)


def get(v, t0, t1, k="k", c="c2"):
    return Op(GET, k, t0, t1, result=v, client=c)


def ok(h):
    return check(h) == []


def test_sequential_history_is_linearizable():
    assert ok([put("a", 0, 1), get("a", 2, 3), put("b", 4, 5), get("b", 6, 7)])


def test_read_of_initial_absent_value():
    assert ok([get(None, 0, 1), put("a", 2, 3)])
    assert not ok([get("a", 0, 1), put("a", 2, 3)])  # read from the future


def test_concurrent_read_may_see_either_value():
    assert ok([put("a", 0, 1), put("b", 2, 6), get("a", 3, 4)])
    assert ok([put("a", 0, 1), put("b", 2, 6), get("b", 3, 4)])


def test_stale_read_is_a_violation():
    # b is acknowledged before the read starts: reading a is stale.
    v = check([put("a", 0, 1), put("b", 2, 3), get("a", 4, 5)])
    assert len(v) == 1 and v[0].key == "k"
    assert "get() -> 'a'" in str(v[0])


def test_reads_going_back_in_time_are_a_violation():
    # Two reads concurrent with put(b), but the second one (after the first
    # returned b) sees a again: no order explains it.
    assert not ok([put("a", 0, 1), put("b", 2, 10), get("b", 3, 4), get("a", 5, 6)])


def test_lost_acknowledged_write():
    # put(b) was acknowledged, then every read shows a.
    h = [put("a", 0, 1), put("b", 2, 3), get("a", 5, 6, c="c3")]
    assert not ok(h)
    assert lost_acked_writes(h[:2], {"k": "a"})
    assert lost_acked_writes(h[:2], {"k": "b"}) == []
    assert lost_acked_writes([put("a", 0, 1)], {"k": None})
    assert lost_acked_writes([Op(PUT, "k", 0, None, value="a")], {"k": None}) == []


def test_unknown_write_may_take_effect_late_or_never():
    lost = Op(PUT, "k", 1, None, value="x", client="c9")
    assert ok([put("a", 0, 0.5), lost, get("a", 2, 3), get("x", 10, 11)])
    assert ok([put("a", 0, 0.5), lost, get("a", 2, 3), get("a", 10, 11)])
    # ...but never before it was invoked.
    assert not ok([put("a", 0, 0.5), get("x", 0.6, 0.7), lost])
    # Once seen, it stays (unless overwritten).
    assert not ok([put("a", 0, 0.5), lost, get("x", 2, 3), get("a", 4, 5)])


def test_delete_and_its_count():
    assert ok([put("a", 0, 1), Op(DELETE, "k", 2, 3, result=1), get(None, 4, 5)])
    assert not ok([put("a", 0, 1), Op(DELETE, "k", 2, 3, result=1), get("a", 4, 5)])
    assert not ok([put("a", 0, 1), Op(DELETE, "k", 2, 3, result=0)])


def test_compare_and_set():
    cas_ok = Op(CAS, "k", 2, 3, expect="a", value="b", result=True)
    assert ok([put("a", 0, 1), cas_ok, get("b", 4, 5)])
    # A CAS that claims success although the value was not a.
    bad = Op(CAS, "k", 2, 3, expect="z", value="b", result=True)
    assert not ok([put("a", 0, 1), bad])
    # A CAS that failed although the value was a.
    assert not ok([put("a", 0, 1), Op(CAS, "k", 2, 3, expect="a", value="b", result=False)])
    # Two concurrent CAS from a: only one may win.
    c1 = Op(CAS, "k", 2, 5, expect="a", value="b", result=True)
    c2 = Op(CAS, "k", 2, 5, expect="a", value="c", result=True)
    assert not ok([put("a", 0, 1), c1, c2])


def test_keys_are_checked_independently():
    h = [put("a", 0, 1, k="x"), get("a", 2, 3, k="x"),
         put("a", 0, 1, k="y"), put("b", 2, 3, k="y"), get("a", 4, 5, k="y")]
    v = check(h)
    assert [x.key for x in v] == ["y"]


def test_serializable_reads_may_be_stale_but_not_forged():
    h = [put("a", 0, 1), put("b", 2, 3)]
    assert check_serializable([get("a", 4, 5), get(None, 4, 5)], h) == []
    bad = check_serializable([get("zz", 4, 5), get("b", 0.5, 1.5)], h)
    assert [why for _, why in bad] == ["value never written (forged)",
                                       "value written only after the read returned"]


def _random_linearizable(n, clients, rng):
    """A history produced by a real atomic register with random overlap."""
    state, ops, t = None, [], 0.0
    busy = {}
    for i in range(n):
        c = rng.randrange(clients)
        t += rng.random()
        kind = rng.choice([PUT, GET, GET, CAS])
        # The op takes effect at t; invoked a bit before, returns a bit after.
        inv, ret = t - rng.random() * 2, t + rng.random() * 2
        inv = max(inv, busy.get(c, -1) + 1e-6)
        if inv > t:
            continue
        busy[c] = ret
        if kind == PUT:
            state = "v%d" % i
            ops.append(Op(PUT, "k", inv, ret, value=state, client=c))
        elif kind == GET:
            ops.append(Op(GET, "k", inv, ret, result=state, client=c))
        else:
            hit = state == "v%d" % (i - 1)
            ops.append(Op(CAS, "k", inv, ret, expect="v%d" % (i - 1), value="v%d" % i,
                          result=hit, client=c))
            if hit:
                state = "v%d" % i
    return ops


@pytest.mark.parametrize("seed", range(20))
def test_random_real_register_histories_pass_and_mutations_fail(seed):
    rng = random.Random(seed)
    h = _random_linearizable(150, 4, rng)
    assert check_key(sorted(h, key=lambda o: o.invoke))[0]
    # Mutate one read to return a value never written: always caught.
    reads = [o for o in h if o.kind == GET]
    if reads:
        victim = rng.choice(reads)
        victim.result = "forged"
        assert not check_key(sorted(h, key=lambda o: o.invoke))[0]


def test_unobserved_unknown_write_still_explains_a_failed_cas():
    # Nobody read x, but only x having taken effect explains the failed CAS
    # from a: the pruned first pass fails, the full search must pass.
    x = Op(PUT, "k", 1, None, value="x")
    h = [put("a", 0, 0.5), x, Op(CAS, "k", 2, 3, expect="a", value="b", result=False)]
    assert ok(h)
    assert not ok([put("a", 0, 0.5), Op(CAS, "k", 2, 3, expect="a", value="b", result=False)])


def test_many_unknown_writes_stay_tractable():
    # 30 timed-out puts nobody saw, interleaved with reads: decided quickly.
    h = [put("a", 0, 0.5)]
    for i in range(30):
        h.append(Op(PUT, "k", 1 + i, None, value="u%d" % i, client="c%d" % (i % 3)))
        h.append(get("a", 1.5 + i, 1.6 + i))
    assert ok(h)
    h.append(get("u7", 40, 41))
    h.append(get("a", 42, 43))  # after u7 was seen, a is gone for good
    assert not ok(h)
