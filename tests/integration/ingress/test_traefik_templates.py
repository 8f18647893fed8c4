"""The shipped Traefik templates, rendered for an environment and loaded into the real Traefik
(issue 12, items 1 and 7): HTTPS with the rendered certificate, the security headers, 429 past the
rate limit, HTTP -> HTTPS, ``/websocket`` to the gevent port, the database manager refused (and
allowed only from the networks given), an unknown host 404, each change taken through an atomic
rewrite and confirmed through Traefik's API; a configuration Traefik refuses is reported."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops import rendering
from erpops.backends.ingress.traefik import TraefikAPI, generation_of, write_dynamic
from erpops.environments import Environment
from erpops.errors import ActionError
from tests.fixtures.docker import free_port
from tests.fixtures.tls import self_signed
from tests.fixtures.traefik import https, running

HOST = "erp.example.test"


class _Backend(http.server.ThreadingHTTPServer):
    """An Odoo stand-in: answers its name, the path and the forwarded headers it saw."""

    def __init__(self, name: str) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = json.dumps({"backend": server.name, "path": self.path,
                                   "proto": self.headers.get("X-Forwarded-Proto"),
                                   "host": self.headers.get("Host")}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.name = name
        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def backends() -> Iterator[dict[str, _Backend]]:
    made = {"web": _Backend("web"), "websocket": _Backend("websocket")}
    yield made
    for b in made.values():
        b.shutdown()
        b.server_close()


class Front:
    """Rendered Traefik configuration for one environment, loaded into a running Traefik."""

    def __init__(self, tmp: Path, env: Environment, servers: dict[str, list[str]], cert: tuple[Path, Path]) -> None:
        self.tmp, self.env, self.servers, self.cert = tmp, env, servers, cert
        self.listen = {"http": env.ingress.http_port, "https": env.ingress.https_port, "api": free_port()}  # type: ignore[union-attr]
        self.api = TraefikAPI(f"http://127.0.0.1:{self.listen['api']}")
        self.dynamic = tmp / "traefik" / "dynamic"

    def context(self, generation: str = "") -> dict[str, Any]:
        front = {"name": "erpops-t", "listen": self.listen, "dynamic_dir": str(self.dynamic),
                 "state_dir": str(self.tmp / "traefik"), "servers": self.servers, "generation": generation,
                 "cert_file": str(self.cert[0]), "key_file": str(self.cert[1])}  # fmt: skip
        return {"env": self.env.as_template(), "front": front}

    def rendered(self) -> tuple[str, str]:
        """(text, generation) as erpops renders it: the marker is the digest of the rest."""
        gen = generation_of(rendering.render("traefik/dynamic.yml", self.context()).text)
        return rendering.render("traefik/dynamic.yml", self.context(gen)).text, gen

    def write(self, text: str | None = None, gen: str | None = None) -> float:
        if text is None:
            text, gen = self.rendered()
        write_dynamic(self.dynamic, text)
        return self.api.wait_serving(
            ["erpops-t-web", "erpops-t-websocket", "erpops-t-database-manager"],
            {f"erpops-t-{k}": v for k, v in self.servers.items()},
            generation=("erpops-t-generation", gen or ""),
            timeout=5,
        )

    def static(self) -> Path:
        path = self.tmp / "traefik" / "traefik.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendering.render("traefik/traefik.yml", self.context()).text)
        return path


def _env(**ingress: Any) -> Environment:
    raw = {"host": HOST, "http_port": free_port(), "https_port": free_port(), **ingress}
    env = Environment.model_validate({"database": {"dsn": "postgresql://odoo@db/postgres"}, "ingress": raw})
    env.name = "t"
    return env


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_the_rendered_front_routes_secures_limits_and_refuses(tmp_path: Path, backends: dict[str, _Backend]) -> None:
    cert = self_signed(tmp_path, HOST, stem="ingress")
    env = _env(rate_limit={"average": 5, "burst": 10}, headers={"X-Robots-Tag": "noindex"})
    front = Front(tmp_path, env, {"web": [backends["web"].url], "websocket": [backends["websocket"].url]}, cert)
    static = front.static()
    yaml.safe_load(static.read_text())
    with running(static, tmp_path / "traefik.log"):
        front.write()
        https_port = env.ingress.https_port  # type: ignore[union-attr]

        status, headers, body = _get(https(HOST, https_port, cert[0]), "/web/login")  # verified with the CA
        seen = json.loads(body)
        assert status == 200 and seen == {"backend": "web", "path": "/web/login", "proto": "https",
                                          "host": f"{HOST}:{https_port}"}, (status, body)  # fmt: skip
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert headers["x-robots-tag"] == "noindex"

        status, _, body = _get(https(HOST, https_port, cert[0]), "/websocket?version=18")
        assert status == 200 and json.loads(body)["backend"] == "websocket"

        for path in ("/web/database/manager", "/web/database/drop", "/xmlrpc/2/db", "/xmlrpc/db"):
            status, _, _ = _get(https(HOST, https_port, cert[0]), path)
            assert status == 403, path

        plain = http.client.HTTPConnection("127.0.0.1", env.ingress.http_port, timeout=5)  # type: ignore[union-attr]
        plain.request("GET", "/web?db=odoo", headers={"Host": HOST})
        moved = plain.getresponse()
        assert moved.status == 301 and moved.getheader("Location") == f"https://{HOST}:{https_port}/web?db=odoo"

        other = https(HOST, https_port, cert[0])
        other.request("GET", "/", headers={"Host": "other.example.test"})
        assert other.getresponse().status == 404

        conn = https(HOST, https_port, cert[0])
        codes = [_get(conn, "/web/health")[0] for _ in range(30)]  # one keep-alive client, as fast as it can
        assert codes.count(429) >= 10 and codes.count(200) >= 10, codes
        conn.request("GET", "/web/health")
        limited = conn.getresponse()
        limited.read()
        assert limited.status != 429 or limited.getheader("Retry-After")


def test_database_manager_allowed_from_a_network_and_a_rewrite_switches_servers(
    tmp_path: Path, backends: dict[str, _Backend]
) -> None:
    cert = self_signed(tmp_path, HOST, stem="ingress")
    env = _env(rate_limit=None, allow_database_manager=True, database_manager_from=["127.0.0.1/32"])
    front = Front(tmp_path, env, {"web": [backends["web"].url], "websocket": []}, cert)
    with running(front.static(), tmp_path / "traefik.log"):
        front.write()
        port = env.ingress.https_port  # type: ignore[union-attr]
        status, _, body = _get(https(HOST, port, cert[0]), "/web/database/manager")
        assert status == 200 and json.loads(body)["path"] == "/web/database/manager"

        front.servers = {"web": [backends["websocket"].url], "websocket": []}  # a new rotation
        seconds = front.write()  # returns once the API shows exactly the new servers
        assert seconds < 5
        status, _, body = _get(https(HOST, port, cert[0]), "/web")
        assert status == 200 and json.loads(body)["backend"] == "websocket"

        assert not list((tmp_path / "traefik").glob(".erpops-dynamic.*"))  # no temporary file left
        assert [p.name for p in front.dynamic.iterdir()] == ["erpops.yml"]


def test_a_configuration_traefik_refuses_is_named(tmp_path: Path, backends: dict[str, _Backend]) -> None:
    cert = self_signed(tmp_path, HOST, stem="ingress")
    env = _env()
    front = Front(tmp_path, env, {"web": [backends["web"].url], "websocket": []}, cert)
    with running(front.static(), tmp_path / "traefik.log"):
        front.write()
        text, _ = front.rendered()
        broken = text.replace("middlewares: [", 'middlewares: ["no-such-middleware", ', 1)
        broken = broken.replace("X-Erpops-Generation: ", 'X-Erpops-Generation: "broken-1" #', 1)
        with pytest.raises(ActionError) as refused:
            front.write(broken, "broken-1")
        assert "router erpops-t-web is disabled" in str(refused.value)
        assert "no-such-middleware" in str(refused.value)
