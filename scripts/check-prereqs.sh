#!/usr/bin/env bash
# One clear sentence per missing prerequisite; non-zero exit when any is missing.
missing=0
py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11+ not found as '$py': install Python 3.11 or newer (or set PYTHON=/path/to/python3.11)." >&2; missing=1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17+ not found: install OpenJDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)." >&2; missing=1
else
  jv=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [ -z "$jv" ] || [ "$jv" -lt 17 ]; then
    echo "Java 17+ not found (found version '$jv'): install OpenJDK 17 or newer." >&2; missing=1
  fi
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "Maven not found: install Maven 3.6+ (Debian: apt-get install maven); it fetches the Kafka and Spark connector jars once." >&2; missing=1
fi
exit $missing
