"""Keys and scopes (issue 21, section 1): every route of the app x {no key, unknown key, wrong
scope, right scope}, parametrised over the app's own routes so a new one cannot go unclassified;
the key file and `streamrec apikey`; no secret in logs or metrics; serve refuses an open
non-loopback bind."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from serving.api import create_app
from serving.apikeys import Authenticator, KeyStore, digest, parse_scopes
from serving.service import ServeConfig

# The policy, written out independently of the app: a route missing here fails the test.
PUBLIC = {
    ("GET", "/"), ("GET", "/static"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
    ("GET", "/movies"), ("GET", "/movies/{movie_id}"), ("GET", "/movies/{movie_id}/similar"),
    ("GET", "/stats/movies"), ("GET", "/stats/genres"), ("GET", "/stats/trending"),
    ("GET", "/stats/histogram"), ("GET", "/stats/stream"), ("GET", "/stats/live-eval"),
    ("GET", "/models"), ("GET", "/models/{version}"),  # metadata only; nothing in the API mutates a model
}  # fmt: skip
SCOPED = {
    ("GET", "/recommendations/{user_id}"): "read",
    ("POST", "/recommendations"): "read",  # anonymous fold-in: stores nothing, but costs a solve
    ("GET", "/users/{user_id}"): "read",
    ("GET", "/stats/dead-letters"): "read",  # raw values of bad records
    ("POST", "/events"): "write",
}
EXAMPLE = {"user_id": "1", "movie_id": "260", "version": "v0001"}
BODIES = {
    ("POST", "/events"): {"user_id": 7, "movie_id": 1, "rating": 4.0},
    ("POST", "/recommendations"): {"ratings": [], "k": 3},
}


def _routes(app) -> list[tuple[str, str]]:
    out = []
    for r in app.routes:
        if isinstance(r, APIRoute) or hasattr(r, "methods"):
            out += [(m, r.path) for m in sorted(r.methods) if m != "HEAD"]
        elif isinstance(r, Mount):
            out.append(("GET", r.path))
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("auth-home")
    store = KeyStore(home / "api_keys.json")
    secrets = {scope: store.create(f"only-{scope}", (scope,)) for scope in ("read", "write", "admin")}
    secrets["all"] = store.create("all", ("read", "write", "admin"))
    return {"home": home, "store": store, **secrets}


@pytest.fixture(scope="module")
def client(keys):
    home = keys["home"]
    cfg = ServeConfig.at_home(home, f"sqlite:///{home / 'sink.db'}", api_keys=keys["store"].path)
    with TestClient(create_app(cfg)) as c:
        yield c


def _app_routes():
    app = create_app(ServeConfig.at_home(Path("/nonexistent"), "sqlite:///:memory:"))
    return _routes(app)


def test_every_route_is_classified_public_or_scoped():
    assert set(_app_routes()) == PUBLIC | set(SCOPED)


def _call(client, method: str, path: str, secret: str | None):
    url = path.format(**EXAMPLE) if "{" in path else path
    if url == "/static":
        url = "/static/app.js"
    elif url == "/movies":
        url = "/movies?q=star"
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    return client.request(method, url, headers=headers, json=BODIES.get((method, path)))


@pytest.mark.parametrize("who", ["no key", "unknown key", "wrong scope", "right scope"])
@pytest.mark.parametrize(("method", "path"), _app_routes(), ids=lambda x: x)
def test_each_route_with_each_kind_of_key(client, keys, method, path, who):
    scope = SCOPED.get((method, path))
    secret = {
        "no key": None,
        "unknown key": "sr_" + "x" * 43,
        "wrong scope": keys["admin"] if scope else keys["read"],
        "right scope": keys[scope] if scope else keys["write"],
    }[who]
    r = _call(client, method, path, secret)
    if scope is None or who == "right scope":  # public, or allowed: whatever the route answers
        assert r.status_code not in (401, 403), (method, path, who, r.status_code, r.text)
        return
    expected = 401 if who in ("no key", "unknown key") else 403
    assert r.status_code == expected, (method, path, who, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)  # a reason, no data
    if expected == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert "streamrec apikey create" in body["detail"] or "unknown" in body["detail"]
    else:
        assert f"'{scope}'" in body["detail"]


def test_a_malformed_authorization_header_is_a_401(client):
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "bearer ", "sr_abc"):
        r = client.get("/users/1", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_auth_off_without_a_key_file(tmp_path):
    with TestClient(create_app(ServeConfig.at_home(tmp_path, f"sqlite:///{tmp_path / 's.db'}"))) as c:
        assert c.get("/stats/dead-letters").status_code == 200  # no key needed


def test_a_revoked_key_stops_working_without_a_restart(client, keys, monkeypatch):
    import serving.apikeys as apikeys

    monkeypatch.setattr(apikeys, "RELOAD_S", 0.0)
    store = keys["store"]
    secret = store.create("temporary", ("read",))
    assert client.get("/stats/dead-letters", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    store.revoke("temporary")
    assert client.get("/stats/dead-letters", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_the_rate_limit_is_per_api_key(keys):
    home = keys["home"]
    cfg = ServeConfig.at_home(
        home, f"sqlite:///{home / 'sink.db'}", api_keys=keys["store"].path, rate_limit=1.0
    )
    with TestClient(create_app(cfg)) as c:
        a, b = ({"Authorization": f"Bearer {keys[s]}"} for s in ("read", "all"))
        assert [c.get("/stats/dead-letters", headers=a).status_code for _ in range(2)] == [200, 429]
        assert c.get("/stats/dead-letters", headers=b).status_code == 200  # another key, its own bucket
        assert c.get("/stats/genres").status_code == 200  # no key: the client address's bucket


def test_no_secret_in_logs_or_metrics(client, keys, caplog):
    caplog.set_level(logging.DEBUG)
    for s in (keys["read"], keys["write"], "sr_" + "y" * 43):
        client.get("/users/1", headers={"Authorization": f"Bearer {s}"})
    metrics = client.get("/metrics").text
    for s in (keys["read"], keys["write"], "y" * 43):
        assert s not in metrics and s not in caplog.text
        assert digest(s) not in metrics


def test_the_key_file_holds_hashes_only_and_is_private(keys):
    text = keys["store"].path.read_text()
    assert stat.S_IMODE(keys["store"].path.stat().st_mode) == 0o600
    for scope in ("read", "write", "admin", "all"):
        assert keys[scope] not in text and digest(keys[scope]) in text
    rows = json.loads(text)["keys"]
    assert {r["name"]: r["scopes"] for r in rows}["all"] == ["read", "write", "admin"]
    assert all(set(r) == {"name", "scopes", "created_at", "sha256"} for r in rows)


def test_identify_compares_with_every_key():
    auth = Authenticator(None)
    assert not auth.enabled and auth.identify("anything") is None
    assert parse_scopes("read, write,read") == ("read", "write")
    with pytest.raises(ValueError):
        parse_scopes("read,delete")


# -- the CLI ------------------------------------------------------------------------------------


def test_apikey_create_list_revoke(tmp_path, monkeypatch, capsys, caplog):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    caplog.set_level(logging.DEBUG)
    assert main(["apikey", "create", "ci", "--scopes", "read,write"]) == 0
    out = capsys.readouterr().out
    secret = out.rstrip("\n").splitlines()[-1]
    assert secret.startswith("sr_") and len(secret) >= 40 and " " not in secret
    assert secret not in caplog.text
    path = tmp_path / "api_keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and secret not in path.read_text()
    assert main(["apikey", "create", "ci", "--scopes", "read"]) == 1  # the name is taken
    capsys.readouterr()
    assert main(["apikey", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and "read,write" in listed and secret not in listed
    assert (
        main(["apikey", "create", "other", "--scopes", "admin", "--api-keys", str(tmp_path / "k.json")]) == 0
    )
    assert (tmp_path / "k.json").exists()
    assert main(["apikey", "revoke", "ci"]) == 0
    assert main(["apikey", "revoke", "ci"]) == 1
    assert KeyStore(path).keys() == []
    assert main(["apikey", "create", "bad", "--scopes", "root"]) == 2


def test_serve_refuses_an_open_non_loopback_bind(tmp_path, monkeypatch, capsys):
    from serving.commands import auth_store
    from streamrec.cli import main
    from tests.test_cli import parse

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without authentication" in err and "--no-auth" in err
    import argparse

    def args(*argv):
        return argparse.Namespace(**parse("serve", *argv))

    assert auth_store(args("--host", "127.0.0.1")) is None  # loopback, no keys: open
    assert auth_store(args("--host", "0.0.0.0", "--no-auth")) is None  # said explicitly
    KeyStore(tmp_path / "api_keys.json").create("k", ("read",))
    assert auth_store(args("--host", "0.0.0.0")).path == tmp_path / "api_keys.json"  # keys: auth on
    assert auth_store(args("--host", "::1", "--api-keys", str(tmp_path / "none.json"))) is not None
