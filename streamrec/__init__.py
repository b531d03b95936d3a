"""streamrec: a streaming, incremental movie recommender on Apache Kafka and Apache Spark.

This package is the shared layer (settings, local Kafka, Spark session, model store, fold-in
math, MovieLens loaders, the event contract). The components `producer`, `streaming` and
`batch` import it, never each other.
"""

__version__ = "0.1.0"
