#!/usr/bin/env bash
# Enforces the trust and layering rules of DESIGN.md on #include lines.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0
check() { # pattern, allowed-dir-regex, message
  local hits
  hits=$(grep -rln --include='*.c' --include='*.h' "$1" src | grep -Ev "$2" || true)
  if [ -n "$hits" ]; then echo "check-layers: $3: $hits"; bad=1; fi
}
check '<leveldb/c.h>' '^src/storage/engine_' 'only storage/engine_*.c may talk to LevelDB'
check '#include "net/' '^src/(net/|api/|lskvd\.c)' 'nothing below api/ includes net/'
check '<openssl/evp.h>' '^src/(crypto|net|identity|ledger)/' 'key material stays in crypto/'
for f in src/kv/*.c src/statemachine/*.c src/lease/*.c src/auth/authstore.c; do
  [ -f "$f" ] || continue
  if grep -nE '#include <time.h>|\brand\(|random\(|clock_gettime|gettimeofday' "$f"; then
    echo "check-layers: $f: apply must be deterministic (no clock, no randomness)"; bad=1
  fi
done
[ $bad -eq 0 ] && echo "check-layers: ok"
exit $bad
