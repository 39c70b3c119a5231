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

# The request body: key "00000000" (what lskv-bench uses for key number 0 with
# --key-size 8) and 256 random bytes.
BODY=$OUT/put.grpc
$PY - "$BODY" <<'EOF' || die "cannot write $BODY"
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
msg = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(value)) + value
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
EOF

revision() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$SERVER_URL" endpoint status -w json 2>/dev/null |
    $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}

# Each run prints "THROUGHPUT OK_COUNT" (OK_COUNT: by the tool's own account).
run_h2load() {
  local log=$OUT/h2load.txt
  h2load -n "$N" -c "$CONNS" -m "$STREAMS" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$BODY" \
    "$SERVER_URL/etcdserverpb.KV/Put" >"$log" 2>&1 || { echo "0 0"; return; }
  awk '/^finished in/ {gsub(",", "", $4); rps=$4} /^status codes:/ {ok=$3} END {print rps+0, ok+0}' "$log"
}

run_lskv_bench() {
  local json=$OUT/lskv-bench.json
  "$LSKV_BENCH" --quiet --endpoints "$SERVER_URL" --conns "$CONNS" --clients $((CONNS * STREAMS)) \
    put --key-size 8 --val-size 256 --key-space-size 1 --total "$N" --json "$json" \
    >"$OUT/lskv-bench.txt" 2>&1
  $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["throughput_rps"], d["requests"])' \
    "$json" 2>/dev/null || echo "0 0"
}

FAILED=0
for target in $TARGETS; do
  start_server "$target" crosscheck || { FAILED=1; continue; }
  declare -A tput=()
  for round in 1 2; do
    for tool in h2load lskv-bench; do
      before=$(revision)
      if [ "$tool" = h2load ]; then read -r rps ok < <(run_h2load); else read -r rps ok < <(run_lskv_bench); fi
      after=$(revision)
      delta=$(( ${after:-0} - ${before:-0} ))
      printf '  %-5s round %s  %-10s %9.0f req/s  %s ok by its count, revision +%s\n' \
        "$target" "$round" "$tool" "$rps" "$ok" "$delta"
      if [ "$delta" -ne "$N" ]; then
        echo "$PROG: $target: $tool: $delta of $N Puts took effect (see $OUT/$tool.txt)" >&2
        FAILED=1
      fi
      tput[$tool]="${tput[$tool]:-} $rps"
    done
  done
  stop_server
  $PY - "$target" "${tput[h2load]}" "${tput[lskv-bench]}" "$TOLERANCE" <<'EOF' || FAILED=1
import statistics, sys
target, h, l, tol = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), float(sys.argv[4])
h = statistics.median(float(x) for x in h)
l = statistics.median(float(x) for x in l)
r = l / h if h else 0.0
ok = abs(r - 1) * 100 <= tol
print(f"{target}: h2load {h:.0f} req/s, lskv-bench {l:.0f} req/s (medians): "
      f"lskv-bench/h2load = {r:.2f} ({'within' if ok else 'NOT within'} {tol:.0f}%)")
sys.exit(0 if ok else 1)
EOF
  unset tput
done
exit $FAILED
