"""Training time with native BLAS (OpenBLAS via scripts/blas.sh) against Spark's Java fallback,
alternating in one run: `streamrec train` on the bundled data (both models, refit included), each
in a fresh process and state directory. Java BLAS is forced with dev.ludovic.netlib's own
`allowNative=false` switches: the code path of a machine without libblas.so.3."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench.common import median
from streamrec.settings import PROJECT_ROOT

LIBS = ("blas", "lapack", "arpack")
JAVA_ONLY = " ".join(f"-Ddev.ludovic.netlib.{lib}.allowNative=false" for lib in LIBS)


def _train(native: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="streamrec-blas-") as home:
        env = {**os.environ, "STREAMREC_HOME": home, "PYTHONPATH": str(PROJECT_ROOT)}
        if not native:
            env["PYSPARK_SUBMIT_ARGS"] = f'--driver-java-options "{JAVA_ONLY}" pyspark-shell'
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "streamrec.cli", "train", "--no-event-log", "--json"],
                              env=env, capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return time.monotonic() - t0


def run(runs: int = 2) -> dict:
    times: dict[str, list[float]] = {"native": [], "java": []}
    for i in range(runs):
        for kind in times:
            times[kind].append(_train(kind == "native"))
            print(f"train run {i + 1}/{runs} ({kind} BLAS): {times[kind][-1]:.1f} s", flush=True)
    return {kind: {"seconds": t, "median_s": median(t)} for kind, t in times.items()}


if __name__ == "__main__":
    print(run())
