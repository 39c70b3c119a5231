# Shared by bench/run.sh and bench/crosscheck.sh: start and stop one server
# (etcd or lskvd, both take etcd's flags) on free loopback ports, or a cluster
# of several members started together.
#
# Callers set: PROG, PY (python3), ETCD, LSKVD (binaries), WORK (data dirs),
# OUT (logs); optionally LSKVD_FLAGS (extra lskvd flags, e.g.
# "--sig-tx-interval 1") and LSKVD_STATE_FLAGS (more, for one server only).
# start_server and start_cluster set SERVER_PID (the first member's),
# SERVER_URL (the first member's client URL) and SERVER_ENDPOINTS (every
# member's client URL, comma-separated: what lskv-bench --endpoints takes).
# shellcheck shell=bash disable=SC2034  # SERVER_* are for the callers
SERVER_PID=""
SERVER_URL=""
SERVER_ENDPOINTS=""
MEMBER_PIDS=()

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# free_ports N: N distinct free loopback ports, one a line (all bound at
# once, so none repeats).
free_ports() {
  $PY - "$1" <<'EOF2'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))
EOF2
}

# stop_server: SIGTERM to every member (all at once, so a cluster does not
# spend its shutdown electing leaders one by one), SIGKILL after 10 s.
stop_server() {
  local pids=("${MEMBER_PIDS[@]}") pid
  [ ${#pids[@]} -gt 0 ] || { [ -n "$SERVER_PID" ] && pids=("$SERVER_PID"); }
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  SERVER_PID=""
  MEMBER_PIDS=()
}

# start_server TARGET TAG [keep]: one server with a fresh data dir (with
# "keep": the data dir TAG already has, i.e. a restart).
start_server() { start_members "$1" "$2" 1 "${3:-}"; }

# start_cluster TARGET TAG N: N members of one cluster (names m1..mN, each
# with its own client and peer port, the same --initial-cluster and
# --initial-cluster-token, as tests/e2e's Cluster), fresh data dirs,
# launched together; returns once every member is ready to serve.
start_cluster() { start_members "$1" "$2" "$3" ""; }

# start_members TARGET TAG N KEEP: what both of the above do. A single
# server keeps its historic name "bench" and file names (no -mN suffix).
start_members() {
  local target=$1 tag=$2 n=$3 keep=$4 bin i ports ic="" name suffix data log
  local -a extra=() names=() cports=() logs=()
  mapfile -t ports < <(free_ports $((2 * n)))
  [ ${#ports[@]} -eq $((2 * n)) ] || { echo "$PROG: no free ports" >&2; return 1; }
  if [ "$target" = etcd ]; then bin=$ETCD; else bin=$LSKVD; read -r -a extra <<<"${LSKVD_FLAGS:-} ${LSKVD_STATE_FLAGS:-}"; fi
  for ((i = 0; i < n; i++)); do
    if [ "$n" = 1 ]; then names[i]=bench; else names[i]=m$((i + 1)); fi
    cports[i]=${ports[2 * i]}
    ic+="${ic:+,}${names[i]}=http://127.0.0.1:${ports[2 * i + 1]}"
  done
  [ "$n" = 1 ] || extra=(--initial-cluster-token "bench-${ports[1]}" "${extra[@]}")
  SERVER_ENDPOINTS=""
  MEMBER_PIDS=()
  for ((i = 0; i < n; i++)); do
    name=${names[i]}
    suffix=""; [ "$n" = 1 ] || suffix=-$name
    data=$WORK/data-$target-$tag$suffix
    log=$OUT/$target-$tag$suffix${keep:+-restart}.log
    logs[i]=$log
    [ -n "$keep" ] || rm -rf "$data"
    local url=http://127.0.0.1:${cports[i]} purl=http://127.0.0.1:${ports[2 * i + 1]}
    "$bin" --name "$name" --data-dir "$data" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "$purl" --initial-advertise-peer-urls "$purl" \
      --initial-cluster "$ic" "${extra[@]}" >"$log" 2>&1 &
    MEMBER_PIDS[i]=$!
    SERVER_ENDPOINTS+="${SERVER_ENDPOINTS:+,}$url"
  done
  SERVER_PID=${MEMBER_PIDS[0]}
  SERVER_URL=http://127.0.0.1:${cports[0]}
  # 30 s for one server; a cluster also elects a leader and publishes.
  local tries=$((n == 1 ? 3000 : 9000)) ready
  for _ in $(seq "$tries"); do
    ready=0
    for ((i = 0; i < n; i++)); do
      if grep -q "ready to serve client requests" "${logs[i]}" 2>/dev/null; then
        ready=$((ready + 1)); continue
      fi
      if ! kill -0 "${MEMBER_PIDS[i]}" 2>/dev/null; then
        wait "${MEMBER_PIDS[i]}"; local rc=$?
        echo "$PROG: $target ($bin$([ "$n" = 1 ] || echo ", member ${names[i]}")) exited with status $rc before it was ready to serve; last lines of ${logs[i]}:" >&2
        tail -n 5 "${logs[i]}" | sed 's/^/    /' >&2
        stop_server
        return 1
      fi
    done
    [ "$ready" = "$n" ] && return 0
    sleep 0.01
  done
  echo "$PROG: $target ($bin) did not print \"ready to serve client requests\" within $((tries / 100)) s (all $n member(s)); see ${logs[*]}" >&2
  stop_server
  return 1
}

# proc_kb FIELD: a VmXXX field of the server's /proc status, in kB.
proc_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null; }

