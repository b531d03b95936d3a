"""Shared bits for benchmarks: a private broker, the machine description, medians."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {java}")  # fmt: skip


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@contextmanager
def private_broker():
    """A broker on free ports in a temporary state directory (never the user's)."""
    from streamrec.kafka_local import LocalKafka, free_port_pair

    with tempfile.TemporaryDirectory(prefix="streamrec-bench-") as tmp:
        broker = LocalKafka(free_port_pair(), state_dir=Path(tmp))
        broker.start()
        try:
            yield broker.address, Path(tmp)
        finally:
            broker.stop()
