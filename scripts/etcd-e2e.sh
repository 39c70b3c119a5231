#!/usr/bin/env bash
# Runs etcd 3.4's own e2e suite (Debian golang-etcd-server-dev, tests/e2e) with
# lskvd as the `etcd` binary, and optionally with Debian's etcd as a control.
#
# Builds offline in GOPATH mode from /usr/share/gocode (no Go module proxy).
# The suite's package is copied to build/etcd-e2e/gopath (first GOPATH entry)
# so that its base port can be moved from 20000 to $E2E_BASE_PORT (other
# engineers use 20xxx); nothing else in it is changed.
#
# Usage: scripts/etcd-e2e.sh [--control] [--no-install] [--all] [TEST_NAME...]
#   TEST_NAME: exact Go test names (each runs alone, -run '^NAME$');
#   default: the tests that concern what lskvd has today (see DEFAULT_TESTS).
#   --all: every test of the package (e2e.test -test.list).
#   --control also runs each test against /usr/bin/etcd.
# Env: E2E_BASE_PORT (25000), E2E_TIMEOUT (per test, 300s), LSKVD (binary).
# Output: build/etcd-e2e/report.txt ("<target> <test> PASS|FAIL|SKIP|NORESULT <secs>"),
#         build/etcd-e2e/reasons.txt (one line per failure, scripts/etcd-e2e-reasons.py),
#         build/etcd-e2e/logs/<target>/<test>.log (test output with members' logs).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/etcd-e2e
BASE_PORT=${E2E_BASE_PORT:-25000}
TIMEOUT=${E2E_TIMEOUT:-300s}
LSKVD=${LSKVD:-$ROOT/build/release/lskvd}
SRC=/usr/share/gocode/src/go.etcd.io/etcd

DEFAULT_TESTS="
TestCtlV3PutNoTLS TestCtlV3PutTimeout TestCtlV3PutIgnoreValue TestCtlV3PutIgnoreLease
TestCtlV3GetNoTLS TestCtlV3GetTimeout TestCtlV3GetQuorum TestCtlV3GetFormat
TestCtlV3GetRev TestCtlV3GetKeysOnly TestCtlV3DelNoTLS TestCtlV3DelTimeout
TestCtlV3Put TestCtlV3PutClientTLS TestCtlV3PutPeerTLS TestCtlV3PutClientAutoTLS
TestCtlV3TxnInteractiveSuccessNoTLS TestCtlV3TxnInteractiveFail
TestCtlV3Compact TestCtlV3CompactPhysical
TestCtlV3WatchNoTLS TestCtlV3WatchTimeout TestCtlV3WatchInteractiveNoTLS
TestCtlV3LeaseGrantTimeToLiveNoTLS TestCtlV3LeaseGrantLeasesNoTLS
TestCtlV3LeaseTestTimeToLiveExpiredNoTLS TestCtlV3LeaseKeepAliveNoTLS
TestCtlV3LeaseKeepAliveOnceNoTLS TestCtlV3LeaseRevokeNoTLS
TestCtlV3Lock TestCtlV3Elect
TestCtlV3MemberListNoTLS TestCtlV3MemberList TestCtlV3MemberRemoveNoTLS
TestCtlV3MemberAddNoTLS TestCtlV3MemberAddForLearner TestCtlV3MemberUpdateNoTLS
TestCtlV3EndpointHealth TestCtlV3EndpointStatus TestCtlV3EndpointHashKV
TestCtlV3Defrag TestCtlV3Alarm TestCtlV3MoveLeaderScenarios
TestCtlV3AuthEnable TestCtlV3AuthDisable TestCtlV3AuthWriteKey TestCtlV3AuthRoleUpdate
TestCtlV3AuthUserDeleteDuringOps TestCtlV3AuthRoleRevokeDuringOps TestCtlV3AuthTxn
TestCtlV3AuthTxnJWT TestCtlV3AuthPrefixPerm TestCtlV3AuthRevokeWithDelete
TestCtlV3AuthInvalidMgmt TestCtlV3AuthFromKeyPerm TestCtlV3AuthAndWatch
TestCtlV3AuthAndWatchJWT TestCtlV3AuthLeaseTestKeepAlive
TestCtlV3AuthLeaseTestTimeToLiveExpired TestCtlV3AuthLeaseGrantLeases
TestCtlV3AuthLeaseGrantLeasesJWT TestCtlV3AuthLeaseRevoke TestCtlV3AuthRoleGet
TestCtlV3AuthUserGet TestCtlV3AuthRoleList TestCtlV3AuthDefrag TestCtlV3AuthEndpointHealth
TestCtlV3AuthTestCacheReload TestCtlV3AuthJWTExpire TestCtlV3AuthCertCN
TestCtlV3AuthCertCNAndUsername TestCtlV3AuthCertCNAndUsernameNoPassword
TestCtlV3AuthCertCNWithWithConcurrentOperation TestV3CurlAuth
"

CONTROL=0
INSTALL=1
ALL=0
TESTS=()
for a in "$@"; do
    case $a in
        --control) CONTROL=1 ;;
        --no-install) INSTALL=0 ;;
        --all) ALL=1 ;;
        *) TESTS+=("$a") ;;
    esac
done

if [ $INSTALL = 1 ]; then
    # golang-etcd-server-dev pulls every golang-*-dev the e2e package imports.
    need=()
    for p in golang-go golang-etcd-server-dev etcd-server etcd-client; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get install -y "${need[@]}" || { echo "apt-get install ${need[*]} failed" >&2; exit 1; }
    fi
fi
[ -x "$LSKVD" ] || { echo "no lskvd at $LSKVD (make RELEASE=1 all)" >&2; exit 1; }

# Overlay GOPATH: only tests/e2e is copied (port patched); the rest resolves
# to Debian's tree, the second GOPATH entry.
GP=$OUT/gopath
E2E=$GP/src/go.etcd.io/etcd/tests/e2e
rm -rf "$GP"
mkdir -p "$E2E" "$GP/src/go.etcd.io/etcd/integration"
cp "$SRC"/tests/e2e/*.go "$E2E"/
ln -s "$SRC/integration/fixtures" "$GP/src/go.etcd.io/etcd/integration/fixtures"
sed -i "s/^const etcdProcessBasePort = 20000$/const etcdProcessBasePort = $BASE_PORT/" "$E2E/cluster_test.go"
# make-mirror's second cluster has its own base port (10000).
sed -i "s/mirrorcfg.basePort = 10000$/mirrorcfg.basePort = $((BASE_PORT + 1000))/" "$E2E/ctl_v3_make_mirror_test.go"
grep -q "etcdProcessBasePort = $BASE_PORT" "$E2E/cluster_test.go" || {
    echo "could not patch etcdProcessBasePort" >&2; exit 1; }

export GOPATH=$GP:/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$OUT/gocache
BIN=$OUT/e2e.test
echo "building $BIN (go test -c, GOPATH mode)"
(cd "$E2E" && go test -c -o "$BIN" go.etcd.io/etcd/tests/e2e) || { echo "build failed" >&2; exit 1; }

if [ $ALL = 1 ]; then
    read -r -a TESTS <<< "$(cd "$E2E" && "$BIN" -test.list '.*' | grep '^Test' | tr '\n' ' ')"
elif [ ${#TESTS[@]} -eq 0 ]; then
    read -r -a TESTS <<< "$(echo $DEFAULT_TESTS)"
fi

mkdir -p "$OUT/bin-lskvd" "$OUT/bin-etcd"
ln -sfn "$LSKVD" "$OUT/bin-lskvd/etcd"
ln -sfn /usr/bin/etcdctl "$OUT/bin-lskvd/etcdctl"
ln -sfn /usr/bin/etcd "$OUT/bin-etcd/etcd"
ln -sfn /usr/bin/etcdctl "$OUT/bin-etcd/etcdctl"

targets=(lskvd)
[ $CONTROL = 1 ] && targets+=(etcd)
REPORT=$OUT/report.txt
: > "$REPORT"
for t in "${TESTS[@]}"; do
    for tgt in "${targets[@]}"; do
        mkdir -p "$OUT/logs/$tgt"
        log=$OUT/logs/$tgt/$t.log
        start=$(date +%s)
        # cwd = the suite's dir: some configs name ../../integration/fixtures.
        # EXPECT_DEBUG makes the suite print the members' and etcdctl's output.
        (cd "$E2E" && EXPECT_DEBUG=1 timeout -k 10 $((${TIMEOUT%s} + 30)) "$BIN" \
            -test.run "^$t\$" -test.v -test.timeout "$TIMEOUT" \
            -bin-dir "$OUT/bin-$tgt" -cert-dir "$SRC/integration/fixtures") > "$log" 2>&1
        secs=$(( $(date +%s) - start ))
        res=$(grep -a -o -E -- "--- (PASS|FAIL|SKIP): $t \(" "$log" | head -1 | awk '{print $2}' | tr -d :)
        [ -n "$res" ] || res=NORESULT
        printf '%s %s %s %ss\n' "$tgt" "$t" "$res" "$secs" | tee -a "$REPORT"
        # Subtests, indented under their test.
        grep -a -E "^ +--- (PASS|FAIL|SKIP): $t/" "$log" | awk -v g="$tgt" \
            '{sub(":", "", $2); printf "%s   %s %s\n", g, $3, $2}' | tee -a "$REPORT"
        # A test that timed out can leave members behind (the suite starts them
        # in their own session); they are the ones run from our bin dir.
        for pid in $(pgrep -f "^$OUT/bin-$tgt/etcd " || true); do
            echo "  leftover member pid $pid: $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)" | tee -a "$log"
            kill "$pid" 2>/dev/null || true
        done
    done
done
python3 "$ROOT/scripts/etcd-e2e-reasons.py" "$OUT" > "$OUT/reasons.txt"
echo "report: $REPORT, reasons of failures: $OUT/reasons.txt"
awk 'NF == 4 {n[$1" "$3]++} END {for (k in n) print k, n[k]}' "$REPORT" | sort
