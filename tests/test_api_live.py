"""The API end to end against a real broker, a running stream and a real browser: a brand-new
user's events go in through POST /events and their personal list comes back from the stream;
the dashboard renders live data in Chromium and its try-it panel answers."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from serving.api import create_app
from serving.apikeys import KeyStore
from serving.service import ServeConfig
from streaming.job import StreamConfig, run_stream
from streamrec.kafka_admin import ensure_topic
from streamrec.settings import BUNDLED_DATA
from tests.serving_support import CHROMIUM_ARGS, ServerThread, chromium_path, model_store_copy

pytestmark = pytest.mark.integration
NEW_USER = 2_100_000_001
STAR_WARS = [(260, 5.0), (1196, 5.0), (1210, 4.5)]


@pytest.fixture(scope="module")
def live(spark, kafka, trained, tmp_path_factory):
    """A continuous stream (0.5 s trigger) and a uvicorn server over the same state."""
    _, model = trained
    home = tmp_path_factory.mktemp("live-home")
    root = model_store_copy(home, model)
    topic = f"t-{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka, topic, partitions=2)
    sink_url = f"sqlite:///{home / 'sink.db'}"
    cfg = StreamConfig(
        bootstrap=kafka, sink_url=sink_url, state_dir=home, event_log_dir=home / "eventlog",
        model_root=root, data=BUNDLED_DATA, topic=topic, trigger_s=0.5, quiet=True,
    )  # fmt: skip
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_stream(spark, cfg, stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the tests below
            failure.append(exc)

    stream = threading.Thread(target=run, daemon=True)
    stream.start()
    keys = KeyStore(home / "api_keys.json")  # auth on: the client and the dashboard use keys
    secret = keys.create("live-test", ("read", "write"))
    app = create_app(ServeConfig.at_home(home, sink_url, bootstrap=kafka, topic=topic, api_keys=keys.path))
    with ServerThread(app) as server:
        client = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {secret}"})
        client.secret = secret
        _wait(lambda: client.get("/stats/stream").json()["queries"].get("foldin"), 120, failure)
        yield client, failure, model
        client.close()
    stop.set()
    stream.join(timeout=90)


def _wait(condition, timeout: float, failure: list):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not failure, failure
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"condition not met within {timeout}s")


def test_posted_events_of_a_new_user_come_back_as_the_streams_personal_list(live):
    client, failure, model = live
    assert client.get(f"/recommendations/{NEW_USER}").json()["source"] == "popularity"
    no_key = httpx.post(f"{client.base_url}/events", json={"user_id": NEW_USER, "movie_id": 1, "rating": 4})
    assert no_key.status_code == 401  # no key: not even a good event goes in
    events = [{"user_id": NEW_USER, "movie_id": m, "rating": r, "timestamp": 1_537_000_000 + i}
              for i, (m, r) in enumerate(STAR_WARS)]  # fmt: skip
    r = client.post("/events", json=events)
    assert r.status_code == 202 and r.json()["accepted"] == 3
    sent = time.monotonic()
    body = _wait(lambda: (b := client.get(f"/recommendations/{NEW_USER}").json())["source"] == "stream" and b,
                 60, failure)  # fmt: skip
    elapsed = time.monotonic() - sent
    ids = [i["movie_id"] for i in body["items"]]
    assert body["model_version"] == model.version and len(ids) == 10
    users = model.scorer.fold_in_one([m for m, _ in STAR_WARS], [r for _, r in STAR_WARS], NEW_USER)
    expected, _, predicted = model.scorer.top_k(users, 10, [[m for m, _ in STAR_WARS]])[0]
    assert ids == expected.tolist()  # the stream's fold-in is the scorer's, to the list
    assert [i["predicted_rating"] for i in body["items"]] == pytest.approx(
        predicted.round(2).tolist(), abs=0.011
    )
    user = _wait(
        lambda: (u := client.get(f"/users/{NEW_USER}").json())["rated_movies"] == 3 and u, 30, failure
    )
    assert user["stream_vector"]["model_version"] == model.version and user["activity"]["n_ratings"] == 3
    print(f"new user's list served by the stream {elapsed:.2f}s after POST /events")


def test_bad_events_are_refused_before_kafka_and_metrics_show_stream_lag(live):
    client, failure, _ = live
    r = client.post("/events", json={"user_id": NEW_USER, "movie_id": 1, "rating": 6})
    assert r.status_code == 422 and r.json()["detail"] == "rating outside 0.5..5.0 in steps of 0.5"
    assert client.get("/readyz").json()["ready"] is True

    def lag_lines():
        text = client.get("/metrics").text
        lines = [ln for ln in text.splitlines() if ln.startswith("streamrec_stream_lag_records{")]
        return len(lines) == 2 and lines  # one per query

    for line in _wait(lag_lines, 30, failure):
        assert float(line.rsplit(" ", 1)[1]) >= 0


def test_dashboard_renders_live_data_and_the_try_it_panel_answers(live, tmp_path):
    from playwright.sync_api import sync_playwright

    client, failure, model = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(str(client.base_url) + "/")
            page.wait_for_function("Number(document.body.dataset.polls || 0) >= 2", timeout=30_000)
            bars = page.evaluate("Chart.getChart('chart-histogram').data.datasets[0].data")
            hist = client.get("/stats/histogram").json()
            assert len(bars) == 10 and sum(bars) >= sum(h["n_ratings"] for h in hist) - 10 > 100_000
            genres = page.evaluate("Chart.getChart('chart-genres').data.labels")
            assert "Drama" in genres
            page.wait_for_function(
                "(Chart.getChart('chart-throughput')?.data.datasets || []).some(d => d.data.length > 0)",
                timeout=30_000,
            )
            assert page.locator("#trending tbody tr").count() >= 1
            assert f"{model.version} ★ CURRENT" in page.locator("#models tbody").inner_text()
            assert page.locator("#ready").inner_text() == "ready"
            # without a key the try-it panel and the dead letters say what they need
            page.wait_for_function("document.querySelector('#my-source').textContent.includes('API key')")
            assert "API key" in page.locator("#dead tbody").inner_text()
            page.fill("#api-key", client.secret)
            page.click("#key-use")
            assert page.evaluate("sessionStorage.getItem('streamrec.apiKey')") == client.secret
            assert page.locator("#api-key").input_value() == ""  # not left in the field
            page.wait_for_function("document.querySelector('#my-source').textContent.includes('popularity')")
            page.wait_for_function("!document.querySelector('#dead tbody').textContent.includes('API key')")
            # try it: rate Star Wars 5 stars, get a personal list without it
            page.fill("#search", "star wars")
            page.locator("#search-results li[data-id='260'] button[data-rate='5']").click()
            page.wait_for_function("document.querySelector('#my-source').textContent.includes('anonymous')")
            items = page.locator("#my-list li")
            assert items.count() == 10
            listed = [int(x) for x in items.evaluate_all("els => els.map(e => e.dataset.id)")]
            assert 260 not in listed and 1196 in listed
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
