"""Contract fuzzing: schemathesis generates requests from the API's own OpenAPI schema (valid and
invalid ones; the valid ones with an API key), and checks every answer: never a 5xx but the declared 503 for
the missing broker, and every body conforms to the schema. Bounded: a fixed number of examples per
operation."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from serving.api import create_app
from serving.apikeys import KeyStore
from serving.service import ServeConfig
from streamrec.kafka_local import free_port_pair
from tests.serving_support import fill_sink, model_store_copy

pytestmark = pytest.mark.integration
EXAMPLES = 25  # per operation and mode: bounded, a few seconds each


@pytest.fixture(scope="module")
def api_schema(trained, history, movies, tmp_path_factory):
    _, model = trained
    home = tmp_path_factory.mktemp("contract-home")
    model_store_copy(home, model)
    url = f"sqlite:///{home / 'sink.db'}"
    fill_sink(url, history.iloc[:5000], movies)
    # No broker on that port: POST /events must answer its documented 503, never a 500.
    bootstrap = f"127.0.0.1:{free_port_pair()}"
    # Valid requests go to a server with auth on, with a key of every scope (the 401/403 matrix is
    # tests/test_api_auth.py). Invalid ones go to the same server with auth off: schemathesis also
    # breaks the Authorization header, and a request we sent with our key would then look like
    # accepted invalid data.
    keys = KeyStore(home / "api_keys.json")
    secret = keys.create("contract", ("read", "write", "admin"))
    with_auth = create_app(ServeConfig.at_home(home, url, bootstrap=bootstrap, api_keys=keys.path))
    open_ = create_app(ServeConfig.at_home(home, url, bootstrap=bootstrap))
    return {
        GenerationMode.POSITIVE: (schemathesis.openapi.from_asgi("/openapi.json", with_auth), secret),
        GenerationMode.NEGATIVE: (schemathesis.openapi.from_asgi("/openapi.json", open_), None),
    }


def _cases() -> list[tuple[str, GenerationMode]]:
    """(operation, mode) pairs: valid requests for every operation, invalid ones where there is
    an input to break (the app builds its schema without loading a model)."""
    app = create_app(ServeConfig.at_home(Path("/nonexistent"), "sqlite:///:memory:"))
    out = []
    for result in schemathesis.openapi.from_asgi("/openapi.json", app).get_all_operations():
        op = result.ok()
        out.append((op.label, GenerationMode.POSITIVE))
        if list(op.iter_parameters()) or op.method.upper() == "POST":
            out.append((op.label, GenerationMode.NEGATIVE))
    return out


# Requests the schema cannot call invalid but the service refuses with a 422, and why: a genre
# the catalogue does not have; an id written as 5.0 (JSON Schema's "integer" allows it, the
# event contract, like the stream's validator, does not).
SEMANTIC_422 = {
    "GET /recommendations/{user_id}": "unknown genre",
    "POST /recommendations": "unknown genre",
    "POST /events": "is not an integer",
}


# schemathesis's own pytest plugin (`from_fixture`) does not run on pytest 9; hypothesis drives
# each operation's strategy directly instead, valid and invalid requests alike.
@pytest.mark.parametrize(("label", "mode"), _cases(), ids=lambda x: getattr(x, "value", x))
def test_no_server_errors_and_responses_match_the_schema(api_schema, label, mode):
    schema, secret = api_schema[mode]
    operation = schema.find_operation_by_label(label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call(headers={"Authorization": f"Bearer {secret}"} if secret else None)
        assert response.status_code not in (401, 403), (case.method, case.path, response.text)
        if response.status_code == 503:  # declared: no broker here; the body still conforms
            assert case.path in ("/events", "/readyz"), (case.path, response.text)
        else:
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
        excluded = [not_a_server_error]
        if mode is GenerationMode.POSITIVE and label in SEMANTIC_422 and response.status_code == 422:
            assert SEMANTIC_422[label] in response.json()["detail"], response.text
            excluded.append(positive_data_acceptance)
        if response.status_code == 413:  # a rejection schemathesis does not list: a body over the limit
            assert response.json()["detail"].startswith("request body larger than"), response.text
            excluded.append(negative_data_rejection)
        case.validate_response(response, excluded_checks=excluded)

    check()
