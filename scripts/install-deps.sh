#!/usr/bin/env bash
# Installs every Debian bookworm package lskv needs to build, run and test.
# Idempotent: does nothing when all are present. Must run as root (or sudo).
set -euo pipefail

PACKAGES=(
  # build
  build-essential pkg-config clang libclang-rt-14-dev
  libuv1-dev libraft-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
  libleveldb-dev libssl-dev libjansson-dev libhttp-parser-dev libcrypt-dev
  # etcd for side-by-side tests and benchmarks, its protos for reference
  etcd-server etcd-client golang-etcd-server-dev
  # tests and tools
  python3 python3-pytest python3-etcd3 python3-grpcio python3-protobuf python3-hypothesis
  protobuf-compiler
  python3-cryptography python3-plyvel curl nghttp2-client openssl gnuplot-nox iproute2 procps psmisc
  # Patroni on lskvd (tests/e2e/test_patroni.py, issue 9)
  patroni postgresql-15
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts etcd as a service on install; our tests start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
pkill -x etcd 2>/dev/null || true
echo "install-deps: done"
