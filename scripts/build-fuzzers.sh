#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer binary (clang) into
# build/fuzz/, linked against a clang-built, instrumented liblskv. Run one:
#   build/fuzz/fuzz_request -max_total_time=60 tests/fuzz/corpus/request
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory CC=clang SANITIZE=1 EXTRA_CFLAGS="-fsanitize=fuzzer-no-link" \
  B=build/fuzz-obj build/fuzz-obj/liblskv.a
mkdir -p build/fuzz
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  echo "  FUZZ   build/fuzz/$name"
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -Isrc -Ibuild/gen -Itests/lib "$src" $(ls tests/lib/*.c 2>/dev/null | grep -v runner.c) \
    build/fuzz-obj/liblskv.a -o "build/fuzz/$name" \
    -luv -lraft -lnghttp2 -lprotobuf-c -lleveldb -lssl -lcrypto -ljansson -lhttp_parser -lpthread
done
