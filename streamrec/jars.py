"""JVM classpaths fetched by Maven (`make jars`) into the git-ignored cache.

Two separate classpaths: the Kafka broker (`jvm/kafka/pom.xml`) and Spark's Kafka connector
(`jvm/spark-kafka/pom.xml`). They are never mixed, so their Kafka client versions cannot clash.
"""

from __future__ import annotations

from pathlib import Path

from .errors import StreamrecError
from .settings import JAR_CACHE


def jar_dir(name: str) -> Path:
    return JAR_CACHE / name


def jars(name: str) -> list[Path]:
    """The cached jars of one classpath; a clear error when they were never fetched."""
    found = sorted(jar_dir(name).glob("*.jar"))
    if not found:
        raise StreamrecError(
            f"JVM jars for {name} are missing in {jar_dir(name)}: run `make jars` "
            "(needs Maven and access to Maven Central once)"
        )
    return found
