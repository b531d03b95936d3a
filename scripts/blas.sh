#!/usr/bin/env bash
# Native BLAS/LAPACK for Spark ML's ALS (dev.ludovic.netlib loads libblas.so.3/liblapack.so.3;
# without them every training run prints "libblas.so.3 not found" and uses Java BLAS).
# Installs Debian's OpenBLAS once when missing and we may (root + apt-get); otherwise one line
# and no failure: training still works, slower.
set -uo pipefail
if ldconfig -p 2>/dev/null | grep -q "libblas.so.3 " && ldconfig -p 2>/dev/null | grep -q "liblapack.so.3 "; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "native BLAS not installed (needs root and apt-get: libopenblas0-pthread); Spark ML uses Java BLAS" >&2
  exit 0
fi
echo "installing OpenBLAS for Spark ML (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1; } \
  || { echo "could not install libopenblas0-pthread; Spark ML uses Java BLAS" >&2; exit 0; }
ldconfig
