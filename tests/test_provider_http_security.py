"""The provider never hands secrets to another origin, and refuses (or warns of) unsafe `envvars:versUrl`s."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from envvars_provider import config
from envvars_provider.clients.http import RedirectRefused, origin
from envvars_provider.clients.vers import VersClient
from envvars_provider.errors import ConfigError, PlatformError
from envvars_provider.protos import provider_pb2
from envvars_provider.resources import vers
from envvars_provider.values import to_struct
from tests.plugin import Plugin, urn

SECRET = "s3cr3t-value-4f9c2e"
API_KEY = "api-key-7d1b0a"
PASSWORD = "hunter2-pw"


@dataclass
class Seen:
    """One request a test server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


@contextmanager
def serve(answer: Callable[[Seen], Reply]) -> Iterator[tuple[str, list[Seen]]]:
    """A real HTTP server on loopback that records every request and replies with `answer`."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Seen(self.command, self.path, dict(self.headers), body)
            seen.append(request)
            status, headers, content = answer(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ok(request: Seen) -> Reply:
    """200 with the env-var set the request carried (or an empty one)."""
    variables = json.loads(request.body)["vars"] if request.body else {}
    return 200, {"Content-Type": "application/json"}, json.dumps({"vars": variables}).encode()


@contextmanager
def client(url: str) -> Iterator[VersClient]:
    """A Vers client of the provider against `url`, closed afterwards."""
    vers = VersClient(url, API_KEY, "the API key is a test setting")
    try:
        yield vers
    finally:
        vers.api.session.close()


# -- redirects ------------------------------------------------------------------------------------


def attempt(call: Callable[[], object]) -> Exception | None:
    """The exception `call` raised, or None: the caller asserts what the attacker saw first."""
    try:
        call()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_put_redirected_to_another_origin_is_refused_and_nothing_reaches_it(status: int) -> None:
    with serve(ok) as (attacker_url, attacker_seen):
        attacker = attacker_url.replace("http://", f"http://thief:{PASSWORD}@")

        def redirect(request: Seen) -> Reply:
            return status, {"Location": f"{attacker}/collect"}, b""

        with serve(redirect) as (api_url, api_seen), client(api_url) as vers:
            error = attempt(lambda: vers.put_vars({"DB_PASSWORD": SECRET}, replace=False))

    assert attacker_seen == []
    assert [(r.method, r.path) for r in api_seen] == [("PUT", "/api/v1/env_vars")]
    assert SECRET.encode() in api_seen[0].body  # the attack was real: the first hop did carry the secret
    assert isinstance(error, RedirectRefused)
    assert str(error) == (
        f"PUT /api/v1/env_vars was redirected (HTTP {status}) to another origin, {attacker_url}: refused, as "
        "following it would hand that origin the request and its secret values; point the provider's URL "
        "setting at the API's own address")
    for leak in (SECRET, API_KEY, PASSWORD, "thief"):
        assert leak not in str(error)


@pytest.mark.parametrize(("call", "refused"), [
    (lambda vers: vers.get_vars(), RedirectRefused),
    (lambda vers: vers.delete_var("K"), RedirectRefused),
    (lambda vers: vers.new_root({"vcpu_count": 1}), PlatformError),  # POST: requests' redirects are never used
], ids=["GET", "DELETE", "POST"])
def test_other_methods_redirected_to_another_origin_reach_nothing(
        call: Callable[[VersClient], object], refused: type[Exception]) -> None:
    with serve(ok) as (attacker_url, attacker_seen):
        def redirect(request: Seen) -> Reply:
            return 307, {"Location": attacker_url + request.path}, b""

        with serve(redirect) as (api_url, _), client(api_url) as vers:
            error = attempt(lambda: call(vers))

    assert attacker_seen == []
    assert isinstance(error, refused)
    assert API_KEY not in str(error)


def test_same_origin_redirect_is_still_followed() -> None:
    base = ""

    def moved(request: Seen) -> Reply:
        if request.path == "/api/v1/env_vars":
            return 307, {"Location": f"{base}/v2/env_vars"}, b""
        return ok(request)

    with serve(moved) as (api_url, seen), client(api_url) as vers:
        base = api_url
        assert vers.put_vars({"A": SECRET}, replace=False) == {"A": SECRET}

    assert [(r.method, r.path) for r in seen] == [("PUT", "/api/v1/env_vars"), ("PUT", "/v2/env_vars")]
    assert seen[0].body == seen[1].body
    assert seen[1].headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1/x", "http://127.0.0.1:80"),
    ("http://127.0.0.1:80/y?q=1", "http://127.0.0.1:80"),
    ("https://API.example.com/", "https://api.example.com:443"),
    ("http://user:pw@[::1]:8080/z", "http://[::1]:8080"),
    ("http://h:99999/", "(a malformed URL)"),
])
def test_origin_is_scheme_host_and_port_only(url: str, expected: str) -> None:
    assert origin(url) == expected


# -- envvars:versUrl ------------------------------------------------------------------------------

URL = vers.URL
assert URL.name == "vers_url"


@pytest.mark.parametrize(("value", "reason"), [
    ("http://[::1", "has a malformed host: brackets must hold a whole IPv6 address, as in http://[::1]:8080, "
                    "got 'http://[::1'"),
    ("http://[example.com]/", "has a malformed host: brackets must hold a whole IPv6 address, as in "
                              "http://[::1]:8080, got 'http://[example.com]/'"),
    ("http://admin:" + PASSWORD + "@api.example.com", "must not contain credentials (user:password@): give the "
                                                     "API key in its own setting, got 'http://***@api.example.com'"),
    ("https://admin@api.example.com", "must not contain credentials (user:password@): give the API key in its "
                                      "own setting, got 'https://***@api.example.com'"),
    ("http://api.example.com:99999", "has an invalid port: it must be a number from 1 to 65535, "
                                     "got 'http://api.example.com:99999'"),
    ("http://api.example.com:0", "has an invalid port: it must be a number from 1 to 65535, "
                                 "got 'http://api.example.com:0'"),
    ("http://api.example.com:http", "has an invalid port: it must be a number from 1 to 65535, "
                                    "got 'http://api.example.com:http'"),
    ("http://api.exa mple.com", "must not contain spaces or control characters, got 'http://api.exa mple.com'"),
    ("https://api.example.com/v1 ", "must not contain spaces or control characters, "
                                    "got 'https://api.example.com/v1 '"),
    ("https://api.exa\tmple.com", "must not contain spaces or control characters, "
                                  "got 'https://api.exa\\tmple.com'"),
    ("not a url", "must be an http(s) URL such as https://api.vers.sh, got 'not a url'"),
    ("ftp://api.example.com", "must be an http(s) URL such as https://api.vers.sh, got 'ftp://api.example.com'"),
    ("admin:" + PASSWORD + "@api.example.com", "must be an http(s) URL such as https://api.vers.sh, "
                                               "got '***@api.example.com'"),
    ("http://admin:" + PASSWORD + "@[::1", "has a malformed host: brackets must hold a whole IPv6 address, "
                                           "as in http://[::1]:8080, got 'http://***@[::1'"),
])
def test_check_rejects_a_bad_url_with_the_rule_it_breaks(value: str, reason: str) -> None:
    assert URL.check(value) == f"envvars:versUrl {reason}"


@pytest.mark.parametrize("value", [
    "https://api.vers.sh", "http://127.0.0.1:8080", "http://[::1]:8080/", "http://localhost", "https://10.0.0.5/v1",
])
def test_check_accepts_a_good_url(value: str) -> None:
    assert URL.check(value) is None


@pytest.mark.parametrize(("value", "host"), [
    ("http://api.example.com", "api.example.com"),
    ("http://10.0.0.5:8080", "10.0.0.5"),
    ("http://[2001:db8::1]/", "2001:db8::1"),
    ("http://0.0.0.0:8080", "0.0.0.0"),
    ("https://api.example.com", None),
    ("http://127.0.0.1:8080", None),
    ("http://127.8.9.10", None),
    ("http://[::1]:8080", None),
    ("http://LOCALHOST:80", None),
    ("http://[::1", None),  # refused instead
])
def test_plain_http_off_this_machine_is_a_warning(value: str, host: str | None) -> None:
    expected = None if host is None else (
        f"envvars:versUrl is plain http:// to {host!r}, which is not this machine: the API key and secret values "
        "would cross the network unencrypted; use https://")
    assert URL.warning(value) == expected


def test_check_and_warnings_name_the_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERS_URL", f"http://u:{PASSWORD}@[::1")
    assert config.check({}) == [("vers_url", "VERS_URL has a malformed host: brackets must hold a whole IPv6 "
                                             "address, as in http://[::1]:8080, got 'http://***@[::1'")]
    monkeypatch.setenv("VERS_URL", "http://api.example.com")
    assert config.check({}) == []
    assert [w.split(" is plain")[0] for w in config.warnings({})] == ["VERS_URL"]
    assert config.warnings({"vers_url": "https://api.example.com"}) == []


def test_resolve_refuses_a_bad_url_and_logs_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("VERS_URL", raising=False)
    with pytest.raises(ConfigError, match="envvars:versUrl has a malformed host") as caught:
        config.resolve({"vers_url": f"http://u:{PASSWORD}@[::1"})
    assert PASSWORD not in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="envvars.provider"):
        resolved = config.resolve({"vers_url": "http://api.example.com"})
    assert resolved.vers_url == "http://api.example.com"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", URL.warning(resolved.vers_url))]


# -- over gRPC, as the engine calls the plugin ----------------------------------------------------

PROVIDER_URN = urn("pulumi:providers:envvars", "default")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugin]:
    monkeypatch.delenv("VERS_URL", raising=False)
    process = Plugin(tmp_path / "plugin.stderr")
    yield process
    process.close()


def test_check_config_reports_a_bad_url_without_its_password(plugin: Plugin) -> None:
    response = plugin.stub.CheckConfig(provider_pb2.CheckRequest(
        urn=PROVIDER_URN, news=to_struct({"versUrl": f"http://admin:{PASSWORD}@[::1"})))
    assert [(f.property, f.reason) for f in response.failures] == [
        ("versUrl", "envvars:versUrl has a malformed host: brackets must hold a whole IPv6 address, as in "
                    "http://[::1]:8080, got 'http://***@[::1'")]


def test_configure_refuses_a_bad_url_cleanly(plugin: Plugin) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(
            args=to_struct({"versUrl": f"http://admin:{PASSWORD}@api.example.com:99999"}), acceptSecrets=True))
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert caught.value.details() == (
        "configuring envvars: envvars:versUrl must not contain credentials (user:password@): give the API key in "
        "its own setting, got 'http://***@api.example.com:99999'")
    with pytest.raises(grpc.RpcError) as caught:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"versUrl": "http://[::1"})))
    assert caught.value.details().startswith("configuring envvars: envvars:versUrl has a malformed host")
    plugin.stderr.flush()
    assert "Traceback" not in Path(plugin.stderr.name).read_text()


def test_configure_warns_of_plain_http_to_another_machine(plugin: Plugin) -> None:
    plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"versUrl": "http://192.0.2.7:8080"})))
    plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"versUrl": "http://127.0.0.1:8080"})))
    warnings = [line for line in Path(plugin.stderr.name).read_text().splitlines() if "WARNING" in line]
    assert warnings == ["envvars-provider WARNING envvars.provider: envvars:versUrl is plain http:// to "
                        "'192.0.2.7', which is not this machine: the API key and secret values would cross the "
                        "network unencrypted; use https://"]
