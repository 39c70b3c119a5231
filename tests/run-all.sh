#!/usr/bin/env bash
# Runs every test: C unit tests (debug and ASan+UBSan), the fuzz corpus replay
# under ASan+UBSan, then the end-to-end suite (real etcdctl, python3-etcd3,
# curl, Debian's etcd 3.4 for comparison) against the sanitizer build of
# lskvd. Ends with pytest's summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0

echo "== unit tests (debug)"
./build/debug/unit_tests || fail=1
echo "== unit tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1 ./build/asan/unit_tests || fail=1

echo "== fuzz corpus replay (ASan+UBSan)"
for f in build/asan/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); corpus=tests/fuzz/corpus/${name#fuzz_}
  [ -d "$corpus" ] || continue
  "$f" "$corpus" || fail=1
done

echo "== end-to-end tests (lskvd built with ASan+UBSan)"
export LSKVD="$PWD/build/asan/lskvd"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
/usr/bin/python3 -m pytest -q -p no:cacheprovider --basetemp="$PWD/build/e2e-tmp" tests/e2e "$@"
rc=$?
if [ $fail -ne 0 ]; then
  echo "unit or fuzz tests failed (see above)"
  exit 1
fi
exit $rc
