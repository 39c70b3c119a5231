# Shared by bench/run.sh and bench/crosscheck.sh: start and stop one server
# (etcd or lskvd, both take etcd's flags) on free loopback ports.
#
# Callers set: PROG, PY (python3), ETCD, LSKVD (binaries), WORK (data dirs),
# OUT (logs); optionally LSKVD_FLAGS (extra lskvd flags, e.g.
# "--sig-tx-interval 1") and LSKVD_STATE_FLAGS (more, for one server only).
# start_server sets SERVER_PID and SERVER_URL.
SERVER_PID=""
SERVER_URL=""

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}

# start_server TARGET TAG [keep]: a fresh data dir (with "keep": the data dir
# TAG already has, i.e. a restart), both binaries take etcd's flags.
start_server() {
  local target=$1 tag=$2 keep=${3:-} cport pport bin data log
  cport=$(free_port); pport=$(free_port)
  while [ "$pport" = "$cport" ]; do pport=$(free_port); done
  data=$WORK/data-$target-$tag
  log=$OUT/$target-$tag${keep:+-restart}.log
  [ -n "$keep" ] || rm -rf "$data"
  local extra=()
  if [ "$target" = etcd ]; then bin=$ETCD; else bin=$LSKVD; read -r -a extra <<<"${LSKVD_FLAGS:-} ${LSKVD_STATE_FLAGS:-}"; fi
  SERVER_URL=http://127.0.0.1:$cport
  "$bin" --name bench --data-dir "$data" \
    --listen-client-urls "$SERVER_URL" --advertise-client-urls "$SERVER_URL" \
    --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" "${extra[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 3000); do
    if grep -q "ready to serve client requests" "$log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID"; local rc=$?
      SERVER_PID=""
      echo "$PROG: $target ($bin) exited with status $rc before it was ready to serve; last lines of $log:" >&2
      tail -n 5 "$log" | sed 's/^/    /' >&2
      return 1
    fi
    sleep 0.01
  done
  echo "$PROG: $target ($bin) did not print \"ready to serve client requests\" within 30 s; see $log" >&2
  stop_server
  return 1
}

# proc_kb FIELD: a VmXXX field of the server's /proc status, in kB.
proc_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null; }

