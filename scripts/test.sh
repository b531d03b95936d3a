#!/usr/bin/env bash
# The whole suite. Services the tests need (Kafka, Spark, PostgreSQL) are started by the
# test fixtures themselves, on private ports and a private state directory.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
rc=$?
[ $rc -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit $rc
