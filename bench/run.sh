#!/usr/bin/env bash
# lskv vs etcd 3.4, side by side, on this machine (see bench/README.md).
#
# Invoked by `make bench` (after a RELEASE=1 build). For each round it starts
# each target with a fresh data directory under build/bench/, runs the same
# workloads with lskv-bench against it, stops it, and moves on: etcd, lskv,
# etcd, lskv, ... Results go to bench/results/<timestamp>/ (one JSON per
# target, round and workload, the servers' logs, lskv-bench's output), the
# table of lskv/etcd ratios to bench/results/latest.md, the latency plot to
# bench/results/latest.png (a partial run, BENCH_WORKLOADS set, to
# bench/results/partial.md and .png instead, so the last full run's table
# stays). The "-3m" workloads run against a 3-member cluster of each target.
#
# Environment:
#   BENCH_QUICK=1          a ~1 minute smoke run (10x less work, 2 rounds)
#   BENCH_TARGETS="etcd lskv"  which servers to run (default both; "etcd" alone works
#                          without lskvd)
#   BENCH_ROUNDS=N         rounds (default 3; 1 with BENCH_QUICK)
#   BENCH_WORKLOADS="..."  run only these workloads (names as in the table)
#   BENCH_REPORT=NAME      write the table and plot to bench/results/NAME.md and
#                          NAME.png (default latest, or partial with BENCH_WORKLOADS)
#   LSKVD_FLAGS="..."     extra lskvd flags (e.g. "--sig-tx-interval 1"); recorded
#                          in env.json
#   LSKVD, LSKV_BENCH, ETCD  binaries (default build/release/lskvd,
#                          build/release/lskv-bench, etcd on PATH)
# Exit status: 0 all good; 1 a workload reported request errors or a server
# failed; 2 bad setup (missing binary, bad environment).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROG=bench/run.sh
PY=/usr/bin/python3

die() { echo "$PROG: $*" >&2; exit 2; }

QUICK=${BENCH_QUICK:-0}
TARGETS=${BENCH_TARGETS:-etcd lskv}
if [ "$QUICK" = 1 ]; then ROUNDS=${BENCH_ROUNDS:-2}; else ROUNDS=${BENCH_ROUNDS:-3}; fi
LSKVD=${LSKVD:-$ROOT/build/release/lskvd}
LSKV_BENCH=${LSKV_BENCH:-$ROOT/build/release/lskv-bench}
ETCD=${ETCD:-$(command -v etcd || true)}

# ---- checks -------------------------------------------------------------
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS=$ROUNDS: not a positive number"
for t in $TARGETS; do
  case $t in
    etcd) [ -n "$ETCD" ] && [ -x "$ETCD" ] ||
            die "etcd: not found (Debian package etcd-server; run 'make deps')" ;;
    lskv) [ -x "$LSKVD" ] ||
            die "$LSKVD: not found. Build it ('make release'), or run etcd alone: BENCH_TARGETS=etcd make bench" ;;
    *) die "BENCH_TARGETS: unknown target '$t' (etcd, lskv)" ;;
  esac
done
[ -x "$LSKV_BENCH" ] || die "$LSKV_BENCH: not found (run 'make release')"
[ -x "$PY" ] || die "$PY: not found (Debian package python3)"
[[ "${BENCH_REPORT:-x}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
  die "BENCH_REPORT=$BENCH_REPORT: not a plain file name"

# ---- workloads ----------------------------------------------------------
# Sizes: full run / BENCH_QUICK.
if [ "$QUICK" = 1 ]; then
  N_KEYS=10000; N_PUT1=300; N_PUT=10000; N_RANGE=10000; N_RANGE_L=5000; N_TXN=5000
  N_HOT=20000; N_HOT_RANGE=10000; N_BIG=100000; N_NOOP1=1000; N_NOOP2=10000
  N_WATCH_PUTS=100; N_KEEPALIVE=10000
else
  N_KEYS=100000; N_PUT1=3000; N_PUT=100000; N_RANGE=100000; N_RANGE_L=50000; N_TXN=50000
  N_HOT=200000; N_HOT_RANGE=100000; N_BIG=1000000; N_NOOP1=10000; N_NOOP2=100000
  N_WATCH_PUTS=1000; N_KEEPALIVE=100000
fi
# watch-latency: Puts of one key at this rate (etcd's benchmark default), one
# at a time: each waits for every watcher's event of the one before.
WATCH_RATE=100
VAL=256
KS="--key-size 8 --val-size $VAL"
C16="--conns 16 --clients 256"

# name|server state|lskv-bench arguments. State "main" is one fresh server per
# round for the workloads in order; "fresh" and "hot" get their own fresh
# servers: the one-key Range on a fresh store is the control for the same
# Range after 200k updates of that key. "stream" (watch latency, lease
# keep-alives: the streaming RPCs) gets a fresh server too.
WORKLOADS=(
  "put-1x1|main|--conns 1 --clients 1 put $KS --key-space-size $N_KEYS --total $N_PUT1"
  "put-16x16|main|$C16 put $KS --key-space-size $N_KEYS --total $N_PUT"
  "range-s-16x16|main|$C16 range $KS --key-space-size $N_KEYS --preload $N_KEYS --consistency s --total $N_RANGE"
  "range-l-16x16|main|$C16 range $KS --key-space-size $N_KEYS --consistency l --total $N_RANGE_L"
  "txn-put-16x16|main|$C16 txn-put $KS --key-space-size $N_KEYS --total $N_TXN"
  "fresh-range-s-16x16|fresh|$C16 range $KS --key-space-size 1 --preload 1 --consistency s --total $N_HOT_RANGE"
  "hot-put-16x16|hot|$C16 put $KS --key-space-size 1 --total $N_HOT"
  "hot-range-s-16x16|hot|$C16 range $KS --key-space-size 1 --consistency s --total $N_HOT_RANGE"
  "big-range-s-16x16|big|$C16 range $KS --key-space-size $N_BIG --preload $N_BIG --consistency s --total $N_RANGE"
  "mem-range-s-16x16|mem|$C16 range --key-size 16 --val-size 16 --key-space-size $N_BIG --preload $N_BIG --consistency s --total $N_RANGE"
  "txn-noop-a-16x16|noopa|$C16 txn-noop --key-size 8 --val-size 2048 --key-space-size $N_KEYS --total $N_NOOP1"
  "txn-noop-b-16x16|noopb|$C16 txn-noop --key-size 8 --val-size 2048 --key-space-size $N_KEYS --total $N_NOOP2"
  "watch-latency-1|stream|--conns 1 --clients 1 watch-latency --watchers 1 $KS --rate $WATCH_RATE --total $N_WATCH_PUTS"
  "watch-latency-1000|stream|--conns 10 --clients 100 watch-latency --watchers 1000 $KS --rate $WATCH_RATE --total $N_WATCH_PUTS"
  "lease-keepalive-16x16|stream|$C16 lease-keepalive --leases 1000 --total $N_KEEPALIVE"
  "put-16x16-3m|3m|$C16 put $KS --key-space-size $N_KEYS --total $N_PUT"
  "range-l-16x16-3m|3m|$C16 range $KS --key-space-size $N_KEYS --preload $N_KEYS --consistency l --total $N_RANGE_L"
)
# State "3m": a 3-member cluster of the target (fresh, all on this machine);
# lskv-bench spreads its connections round-robin over the three members'
# endpoints, so two thirds of the requests reach a follower (writes and
# read-index rounds forwarded to the leader). range-l-16x16-3m preloads the
# key space itself (the single-node range-l-16x16 reads what range-s-16x16
# loaded), so it can run alone.
state_members() { if [ "$1" = 3m ]; then echo 3; else echo 1; fi; }
# Extra lskvd flags by state: "mem" measures the trusted core without the
# value cache (what the per-key memory target is about).
state_flags() { if [ "$1" = mem ]; then echo "--cache-size 0"; fi; }
# After the last workload of these states the server is restarted on its
# data dir and the time to "ready" is recorded (restart-<state>.json): "main"
# after its writes (N_PUT1 + N_KEYS + N_PUT + N_TXN puts since start), "big"
# holding N_BIG keys; "noopa" and "noopb" after N_NOOP1 and N_NOOP2 Txns that
# change nothing (their compare fails), each a ~2 KB raft entry.
RESTART_AFTER="main big noopa noopb"
# The peak RSS sample is taken after this workload: N_KEYS keys are loaded.
RSS_AFTER=range-l-16x16
# The memory sample after this one: N_BIG keys of 16 B with 16 B values,
# lskv without the value cache (RSS, and lskv's trusted heap from /metrics).
MEM_AFTER=mem-range-s-16x16

want_workload() {
  [ -z "${BENCH_WORKLOADS:-}" ] && return 0
  local w; for w in $BENCH_WORKLOADS; do [ "$w" = "$1" ] && return 0; done
  return 1
}

# ---- servers ------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
WORK=$ROOT/build/bench
mkdir -p "$OUT" "$WORK" || die "cannot create $OUT or $WORK"
SERVER_PID=""
SERVER_URL=""
FAILED=0

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
  stop_server
  rm -rf "$WORK"/data-*
}
trap cleanup EXIT
trap 'echo "$PROG: interrupted" >&2; exit 130' INT TERM

# rss_sample TARGET ROUND KEYS: peak and current RSS of the server, and the
# RSS it had when it became ready (BASE_RSS_KB), from /proc.
BASE_RSS_KB=0
rss_sample() {
  local hwm rss
  hwm=$(proc_kb VmHWM); rss=$(proc_kb VmRSS)
  [ -n "$hwm" ] || { echo "$PROG: $1: cannot read /proc/$SERVER_PID/status" >&2; return 0; }
  printf '{"target": "%s", "round": %s, "keys": %s, "vmhwm_kb": %s, "vmrss_kb": %s, "start_rss_kb": %s}\n' \
    "$1" "$2" "$3" "$hwm" "$rss" "${BASE_RSS_KB:-0}" >"$OUT/$1-r$2-rss.json"
}

# metrics_gauge NAME: a gauge of the server's /metrics (lskvd's), or nothing.
metrics_gauge() {
  $PY - "$SERVER_URL/metrics" "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=30).read().decode().splitlines():
    p = line.split()
    if len(p) == 2 and p[0] == sys.argv[2]:
        print(p[1])
EOF
}

# mem_sample TARGET ROUND KEYS: RSS from /proc, and for lskv the heap split
# of /metrics (lskv_trusted_bytes: heap in use minus LevelDB's memtables and
# block cache), now and when the server became ready.
BASE_TRUSTED=""
mem_sample() {
  local hwm rss trusted=null heap=null untrusted=null base=null
  hwm=$(proc_kb VmHWM); rss=$(proc_kb VmRSS)
  [ -n "$hwm" ] || { echo "$PROG: $1: cannot read /proc/$SERVER_PID/status" >&2; return 0; }
  if [ "$1" = lskv ]; then
    trusted=$(metrics_gauge lskv_trusted_bytes); heap=$(metrics_gauge lskv_heap_in_use_bytes)
    untrusted=$(metrics_gauge lskv_untrusted_bytes); base=${BASE_TRUSTED:-null}
    [ -n "$trusted" ] || { echo "$PROG: lskv: no lskv_trusted_bytes in /metrics" >&2; FAILED=1; trusted=null; }
  fi
  printf '{"target": "%s", "round": %s, "keys": %s, "key_size": 16, "val_size": 16, "vmhwm_kb": %s, "vmrss_kb": %s, "start_rss_kb": %s, "trusted_bytes": %s, "heap_bytes": %s, "untrusted_bytes": %s, "start_trusted_bytes": %s}\n' \
    "$1" "$2" "$3" "$hwm" "$rss" "${BASE_RSS_KB:-0}" "$trusted" "${heap:-null}" "${untrusted:-null}" "$base" \
    >"$OUT/$1-r$2-mem.json"
  printf '  r%s %-5s %-18s RSS %s MiB%s\n' "$2" "$1" "memory" "$((rss / 1024))" \
    "$([ "$trusted" != null ] && $PY -c "print(', trusted %.1f B/key' % ($trusted / $3))")"
}

# restart_sample TARGET ROUND STATE WRITES KEYS: restarts the server on its
# data dir and records how long it took until it was ready to serve.
restart_sample() {
  local target=$1 round=$2 state=$3 writes=$4 keys=$5 t0 t1
  stop_server
  t0=$(date +%s.%N)
  if ! start_server "$target" "r$round-$state" keep; then
    echo "$PROG: $target round $round: restart after $state failed" >&2
    FAILED=1
    return 0
  fi
  t1=$(date +%s.%N)
  printf '{"target": "%s", "round": %s, "state": "%s", "writes": %s, "keys": %s, "restart_s": %s}\n' \
    "$1" "$2" "$state" "$writes" "$keys" "$($PY -c "print(round($t1 - $t0, 3))")" \
    >"$OUT/$target-r$round-restart-$state.json"
  printf '  r%s %-5s %-18s %s s to ready\n' "$round" "$target" "restart-$state" \
    "$($PY -c "print(round($t1 - $t0, 2))")"
}

# run_workload TARGET ROUND NAME ARGS...
run_workload() {
  local target=$1 round=$2 name=$3; shift 3
  local json=$OUT/$target-r$round-$name.json txt=$OUT/$target-r$round-$name.txt rc
  local quiet=--quiet
  [ -t 2 ] && quiet=""
  # shellcheck disable=SC2086
  "$LSKV_BENCH" --endpoints "$SERVER_ENDPOINTS" --label "$target" --json "$json" $quiet "$@" >"$txt"
  rc=$?
  local line
  line=$($PY - "$json" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1])); l = d["latency_ms"]
print("%9.0f %s  p50 %7.3f  p99 %8.3f  p99.9 %8.3f ms  %d errors"
      % (d["throughput_rps"], "ev/s " if d["workload"] == "watch-latency" else "req/s",
         l["p50"], l["p99"], l["p99_9"], d["errors"]))
EOF
  )
  printf '  r%s %-5s %-18s %s\n' "$round" "$target" "$name" "${line:-(no results)}"
  if [ $rc -ne 0 ]; then
    echo "$PROG: $target round $round $name: lskv-bench exited with status $rc; see $txt" >&2
    FAILED=1
  fi
}

maybe_restart() {
  case " $RESTART_AFTER " in *" $3 "*) ;; *) return 0 ;; esac
  case $3 in
    main) restart_sample "$1" "$2" main $((N_PUT1 + N_KEYS + N_PUT + N_TXN)) "$N_KEYS" ;;
    noopa) restart_sample "$1" "$2" noopa "$N_NOOP1" 0 ;;
    noopb) restart_sample "$1" "$2" noopb "$N_NOOP2" 0 ;;
    *) restart_sample "$1" "$2" "$3" "$N_BIG" "$N_BIG" ;;
  esac
}

run_round() {
  local target=$1 round=$2 entry name state args current=""
  for entry in "${WORKLOADS[@]}"; do
    IFS='|' read -r name state args <<<"$entry"
    want_workload "$name" || continue
    if [ "$state" != "$current" ]; then
      maybe_restart "$target" "$round" "$current"
      stop_server
      rm -rf "$WORK"/data-*
      LSKVD_STATE_FLAGS=$(state_flags "$state")
      if ! start_cluster "$target" "r$round-$state" "$(state_members "$state")"; then
        echo "$PROG: stopping: $target cannot be benchmarked" >&2
        exit 1
      fi
      BASE_RSS_KB=$(proc_kb VmRSS)
      BASE_TRUSTED=""
      if [ "$target" = lskv ]; then BASE_TRUSTED=$(metrics_gauge lskv_trusted_bytes); fi
      current=$state
    fi
    # shellcheck disable=SC2086
    run_workload "$target" "$round" "$name" $args
    [ "$name" = "$RSS_AFTER" ] && rss_sample "$target" "$round" "$N_KEYS"
    [ "$name" = "$MEM_AFTER" ] && mem_sample "$target" "$round" "$N_BIG"
  done
  maybe_restart "$target" "$round" "$current"
  stop_server
  rm -rf "$WORK"/data-*
}

# ---- run ----------------------------------------------------------------
{
  echo "{"
  echo "  \"stamp\": \"$STAMP\", \"quick\": $([ "$QUICK" = 1 ] && echo true || echo false),"
  echo "  \"rounds\": $ROUNDS, \"targets\": \"$TARGETS\","
  echo "  \"nproc\": $(nproc), \"kernel\": \"$(uname -r)\","
  echo "  \"cpu\": \"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)\","
  echo "  \"filesystem\": \"$(df -T "$WORK" | awk 'NR==2 {print $2}')\","
  echo "  \"etcd_version\": \"$("$ETCD" --version 2>/dev/null | awk '/etcd Version/ {print $3}')\","
  echo "  \"lskv_commit\": \"$(git rev-parse --short HEAD 2>/dev/null)\","
  echo "  \"lskvd_flags\": \"${LSKVD_FLAGS:-}\","
  echo "  \"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\""
  echo "}"
} >"$OUT/env.json"

echo "$PROG: targets: $TARGETS; $ROUNDS round(s)$([ "$QUICK" = 1 ] && echo ', quick'); results in ${OUT#"$ROOT"/}"
START=$SECONDS
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    run_round "$target" "$round"
  done
done
echo "$PROG: done in $((SECONDS - START)) s"

REPORT=bench/results/${BENCH_REPORT:-$([ -n "${BENCH_WORKLOADS:-}" ] && echo partial || echo latest)}
$PY bench/report.py "$OUT" --markdown "$REPORT.md" --plot "$REPORT.png" ||
  { echo "$PROG: report failed" >&2; FAILED=1; }
[ -f "$REPORT.md" ] && cat "$REPORT.md"
if [ $FAILED -ne 0 ]; then
  echo "$PROG: some workloads failed (see above)" >&2
  exit 1
fi
