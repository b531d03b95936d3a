"""The one Spark session factory used by batch and streaming jobs.

local[*] by default (STREAMREC_SPARK_MASTER for a cluster), the driver's Python for workers,
quiet logs, Spark's Kafka connector from the local jar cache (only the jars the pyspark wheel
does not already ship), the RocksDB state store, and memory sized for a 2-core / 24 GiB machine.
Under spark-submit the session it finds is reused and only missing settings are added.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from pathlib import Path

from .jars import jar_dir
from .settings import spark_storage

ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
CHECKPOINT_FILE_MANAGER = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)
_CONF = Path(__file__).with_name("spark_conf")


def _artifact(jar: Path) -> str:
    """'kafka-clients-3.9.2.jar' -> 'kafka-clients'."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", jar.name)


def connector_jars() -> list[str]:
    """Kafka connector jars minus the artifacts pyspark already ships (no duplicate classes)."""
    import pyspark

    shipped = {_artifact(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return [str(j) for j in sorted(jar_dir("spark-kafka").glob("*.jar")) if _artifact(j) not in shipped]


def get_spark(app: str = "streamrec", shuffle_partitions: int | None = None):
    """Create (or return) the process's SparkSession."""
    # Native BLAS (scripts/blas.sh) single-threaded: Spark already runs one task per core, and
    # OpenBLAS's own threads on top of them would oversubscribe the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Our log4j2.properties (errors only) is found on the classpath through SPARK_CONF_DIR.
    os.environ.setdefault("SPARK_CONF_DIR", str(_CONF))
    from pyspark.sql import SparkSession

    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app)
    master = os.environ.get("STREAMREC_SPARK_MASTER")
    if master or not under_submit:
        builder = builder.master(master or "local[*]")
    # One shuffle partition per core: on 2 cores, 2 instead of 4 lowered the stream's latency and
    # raised its throughput (docs/benchmarks.md). A streaming checkpoint keeps its own count.
    default_parts = str(max(2, os.cpu_count() or 2))
    parts = shuffle_partitions or int(os.environ.get("STREAMREC_SPARK_SHUFFLE_PARTITIONS", default_parts))
    settings = {
        "spark.driver.memory": os.environ.get("STREAMREC_SPARK_DRIVER_MEMORY", "6g"),
        "spark.sql.shuffle.partitions": str(parts),
        "spark.default.parallelism": str(parts),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",  # the same on a cluster's executors
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB,
        # Commit a changelog per batch instead of a RocksDB snapshot: the fold-in's state commit
        # fell from ~450 to ~270 ms per batch. Backward compatible with existing checkpoints.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Checkpoint files (offset and commit logs, RocksDB's changelogs and snapshots) written
        # through Hadoop's FileSystem API. The default FileContext one, on a local path without
        # libhadoop, forks `readlink` and `chmod` for every file it renames or creates; in a
        # long-running stream those forks grew from ~100 to ~300 ms per batch in 40 minutes
        # (jstack on the stream's JVM; docs/benchmarks.md). A rename on a local file system is
        # atomic either way.
        "spark.sql.streaming.checkpointFileManagerClass": CHECKPOINT_FILE_MANAGER,
        "spark.sql.adaptive.enabled": "true",
        # Shuffle files and unpersisted blocks are deleted once the driver's GC finds them
        # unreferenced; a `retrain --every` JVM can idle for its whole interval without one
        # (Spark's default forces one every 30 min).
        "spark.cleaner.periodicGC.interval": "5min",
    }
    if (master or "").startswith("spark://"):
        # A standalone master gives an application every free core unless capped: a running
        # stream would starve a retrain forever. Each takes 2 one-core executors by default.
        settings |= {
            "spark.cores.max": os.environ.get("STREAMREC_SPARK_CORES_MAX", "2"),
            "spark.executor.cores": "1",
            "spark.executor.memory": os.environ.get("STREAMREC_SPARK_EXECUTOR_MEMORY", "1g"),
        }
    jars = connector_jars()
    if jars:
        settings["spark.jars"] = ",".join(jars)
    for key, value in settings.items():
        builder = builder.config(key, value)
    fresh = SparkSession.getActiveSession() is None
    spark = builder.getOrCreate()
    if fresh:
        atexit.register(spark.stop)  # a clean stop keeps Python workers from dying noisily
    spark.sparkContext.setLogLevel("ERROR")
    # ALS needs a checkpoint directory to cut its lineage (StackOverflowError otherwise).
    checkpoints = spark_storage() / "spark" / "checkpoints"  # executors write these
    checkpoints.mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(str(checkpoints))
    return spark
