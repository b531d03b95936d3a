"""Session-wide services: one private Kafka broker and (later) one Spark session.

Everything runs under a temporary STREAMREC_HOME on free ports, so a user's own broker or
state is never touched; every test gets uuid-named topics and consumer groups.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from streamrec.kafka_local import LocalKafka, free_port_pair


@pytest.fixture(scope="session")
def state_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("streamrec-home")
    with pytest.MonkeyPatch.context() as mp:  # the whole session, undone at its end
        mp.setenv("STREAMREC_HOME", str(home))
        # The bundled history spans decades of event time and the stream tests check `trending`
        # exactly over all of it: keep every window (retention itself: tests/test_retention.py).
        mp.setenv("STREAMREC_STREAM_KEEP_TRENDING", "36500d")
        yield home


@pytest.fixture(scope="session")
def kafka(state_home) -> str:
    """Bootstrap address of the session's broker."""
    broker = LocalKafka(free_port_pair(), state_dir=state_home)
    broker.start()
    yield broker.address
    broker.stop()


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def spark(state_home):
    """The suite's one local Spark session (local[2]-sized, as on a 2-core CI machine)."""
    from streamrec.spark import get_spark

    with pytest.MonkeyPatch.context() as mp:
        if "STREAMREC_SPARK_DRIVER_MEMORY" not in os.environ:
            mp.setenv("STREAMREC_SPARK_DRIVER_MEMORY", "3g")
        yield get_spark("streamrec-tests")


@pytest.fixture(scope="session")
def trained(spark, state_home):
    """A model trained and published from the bundled data with default parameters."""
    from batch.publish import TrainOptions, default_spec, run_training
    from streamrec.model_store import ModelStore
    from streamrec.settings import BUNDLED_DATA

    store = ModelStore(state_home / "models")
    res = run_training(spark, TrainOptions(default_spec(BUNDLED_DATA)), store)
    return res, store.load(res["version"])


@pytest.fixture(scope="session")
def history(trained):
    """The ratings the `trained` model was trained on, latest per (user, movie)."""
    from streamrec.history import latest_per_pair, load_history

    _, model = trained
    return latest_per_pair(load_history(model.meta.history))


@pytest.fixture(scope="session")
def movies():
    from streamrec.movielens import load_movies
    from streamrec.settings import BUNDLED_DATA

    return load_movies(BUNDLED_DATA)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server started by the project's script (installed from Debian if needed)."""
    import shutil
    import subprocess

    from streamrec.settings import PROJECT_ROOT

    root = Path(f"/tmp/streamrec-pg-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    data = root / "data"
    script = PROJECT_ROOT / "scripts" / "postgres.sh"
    done = subprocess.run(
        [str(script), "start", str(data), str(free_port_pair())], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    yield done.stdout.strip().splitlines()[-1]
    subprocess.run([str(script), "stop", str(data)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
