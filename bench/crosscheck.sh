#!/usr/bin/env bash
# Independent cross-check of lskv-bench's throughput with h2load (Debian
# nghttp2-client), on the same workload against the same fresh server:
# 16 connections x 16 streams, each request a gRPC Put of one fixed 8-byte key
# and a 256-byte value. The Put body for h2load is built here, independently
# of lskv-bench: 5-byte gRPC prefix + PutRequest serialized by hand
# (field 1 key, field 2 value).
#
# h2load counts only HTTP status codes, and a failed gRPC call still answers
# 200 (the error is in the grpc-status trailer). So the script also reads the
# server's revision before and after each run (etcdctl endpoint status): every
# successful Put adds exactly one, so the revision delta is the number of
# Puts that really succeeded.
#
# Then the same for a serializable Range of that key (RangeRequest field 1
# key, field 7 serializable); reads leave the revision alone, so there only
# the throughputs and the success counts are compared.
#
# Alternates h2load and lskv-bench (2 runs each) and prints the medians and
# their ratio; the two should agree within 15 %. Exit status 0 when they do,
# 1 when not (or a run failed), 2 on bad setup.
#
# Environment: BENCH_TARGETS (default etcd; "etcd lskv" adds lskvd),
# CROSSCHECK_N (requests per run, default 50000), LSKVD, LSKV_BENCH, ETCD.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROG=bench/crosscheck.sh
PY=/usr/bin/python3
die() { echo "$PROG: $*" >&2; exit 2; }

TARGETS=${BENCH_TARGETS:-etcd}
N=${CROSSCHECK_N:-50000}
CONNS=16
STREAMS=16 # per connection
TOLERANCE=15 # percent
LSKVD=${LSKVD:-$ROOT/build/release/lskvd}
LSKV_BENCH=${LSKV_BENCH:-$ROOT/build/release/lskv-bench}
ETCD=${ETCD:-$(command -v etcd || true)}
ETCDCTL=$(command -v etcdctl || true)

[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "CROSSCHECK_N=$N: not a positive number"
command -v h2load >/dev/null || die "h2load: not found (Debian package nghttp2-client)"
[ -n "$ETCDCTL" ] || die "etcdctl: not found (Debian package etcd-client)"
[ -x "$LSKV_BENCH" ] || die "$LSKV_BENCH: not found (run 'make release')"
for t in $TARGETS; do
  case $t in
    etcd) [ -n "$ETCD" ] || die "etcd: not found (Debian package etcd-server)" ;;
    lskv) [ -x "$LSKVD" ] || die "$LSKVD: not found (build it, or BENCH_TARGETS=etcd)" ;;
    *) die "BENCH_TARGETS: unknown target '$t' (etcd, lskv)" ;;
  esac
done

WORK=$ROOT/build/bench
OUT=$WORK/crosscheck
mkdir -p "$OUT" || die "cannot create $OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'stop_server; rm -rf "$WORK"/data-*' EXIT
trap 'echo "$PROG: interrupted" >&2; exit 130' INT TERM

# The request bodies: key "00000000" (what lskv-bench uses for key number 0
# with --key-size 8) and 256 random bytes.
$PY - "$OUT" <<'EOF' || die "cannot write the request bodies in $OUT"
import os, struct, sys
key, value = b"00000000", os.urandom(256)
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def frame(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg
put = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(value)) + value
rng = b"\x0a" + varint(len(key)) + key + b"\x38\x01"
open(os.path.join(sys.argv[1], "put.grpc"), "wb").write(frame(put))
open(os.path.join(sys.argv[1], "range.grpc"), "wb").write(frame(rng))
EOF

revision() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$SERVER_URL" endpoint status -w json 2>/dev/null |
    $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}

# Each run prints "THROUGHPUT OK_COUNT" (OK_COUNT: by the tool's own account).
# run_h2load put|range
run_h2load() {
  local log=$OUT/h2load-$1.txt method=Put
  [ "$1" = range ] && method=Range
  h2load -n "$N" -c "$CONNS" -m "$STREAMS" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$OUT/$1.grpc" \
    "$SERVER_URL/etcdserverpb.KV/$method" >"$log" 2>&1 || { echo "0 0"; return; }
  awk '/^finished in/ {gsub(",", "", $4); rps=$4} /^status codes:/ {ok=$3} END {print rps+0, ok+0}' "$log"
}

# run_lskv_bench put|range
run_lskv_bench() {
  local json=$OUT/lskv-bench-$1.json args
  if [ "$1" = put ]; then args="put --val-size 256"; else args="range --consistency s"; fi
  # shellcheck disable=SC2086
  "$LSKV_BENCH" --quiet --endpoints "$SERVER_URL" --conns "$CONNS" --clients $((CONNS * STREAMS)) \
    $args --key-size 8 --key-space-size 1 --total "$N" --json "$json" >"$OUT/lskv-bench-$1.txt" 2>&1
  $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["throughput_rps"], d["requests"])' \
    "$json" 2>/dev/null || echo "0 0"
}

FAILED=0
for target in $TARGETS; do
  start_server "$target" crosscheck || { FAILED=1; continue; }
  for wl in put range; do
    h_runs=""; l_runs=""
    for round in 1 2; do
      for tool in h2load lskv-bench; do
        before=$(revision)
        if [ "$tool" = h2load ]; then read -r rps ok < <(run_h2load $wl); else read -r rps ok < <(run_lskv_bench $wl); fi
        after=$(revision)
        delta=$(( ${after:-0} - ${before:-0} ))
        printf '  %-5s %-5s round %s  %-10s %9.0f req/s  %6s ok by its count, revision +%s\n' \
          "$target" "$wl" "$round" "$tool" "$rps" "$ok" "$delta"
        want=$N; [ $wl = range ] && want=0
        if [ "$delta" -ne "$want" ] || [ "$ok" != "$N" ]; then
          echo "$PROG: $target $wl: $tool: $ok of $N requests ok, revision +$delta (expected +$want); see $OUT/$tool-$wl.txt" >&2
          FAILED=1
        fi
        if [ "$tool" = h2load ]; then h_runs="$h_runs $rps"; else l_runs="$l_runs $rps"; fi
      done
    done
    $PY - "$target $wl" "$h_runs" "$l_runs" "$TOLERANCE" <<'EOF' || FAILED=1
import statistics, sys
what, h, l, tol = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), float(sys.argv[4])
h = statistics.median(float(x) for x in h)
l = statistics.median(float(x) for x in l)
r = l / h if h else 0.0
ok = abs(r - 1) * 100 <= tol
print(f"{what}: h2load {h:.0f} req/s, lskv-bench {l:.0f} req/s (medians): "
      f"lskv-bench/h2load = {r:.2f} ({'within' if ok else 'NOT within'} {tol:.0f}%)")
sys.exit(0 if ok else 1)
EOF
  done
  stop_server
done
exit $FAILED
