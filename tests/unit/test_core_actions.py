"""Core actions against real local servers: http.check, wait (duration, HTTP, TCP), exec, assert."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from erpops.errors import ExitCode
from tests.unit.conftest import HEADER


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/web/health":
            body, code = b'{"status": "pass"}', 200
        elif self.path == "/slow":
            time.sleep(2)
            body, code = b"late", 200
        else:
            body, code = b"broken", 500
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_step(action: str, with_: str, extra: str = "") -> str:
    return HEADER + f"steps:\n  - id: s\n    action: {action}\n    with: {with_}\n{extra}"


def test_http_check_status_and_body(runner, write_runbook, web):
    ok = runner.run(write_runbook(one_step("http.check", f"{{url: '{web}/web/health', contains: pass}}")))
    assert ok.state == "succeeded"
    assert ok.steps[0].outputs["status"] == 200 and "pass" in ok.steps[0].outputs["body"]
    missing = runner.run(write_runbook(one_step("http.check", f"{{url: '{web}/web/health', contains: fail}}")))
    assert missing.state == "failed" and "without 'fail'" in missing.error
    bad = runner.run(write_runbook(one_step("http.check", f"{{url: '{web}/other'}}")))
    assert bad.state == "failed" and "HTTP 500" in bad.error
    wanted = runner.run(write_runbook(one_step("http.check", f"{{url: '{web}/other', status: [500, 503]}}")))
    assert wanted.state == "succeeded"


def test_http_check_timeout_and_unreachable(runner, write_runbook, web):
    start = time.monotonic()
    slow = runner.run(write_runbook(one_step("http.check", f"{{url: '{web}/slow', timeout: 300ms}}")))
    assert slow.state == "failed" and time.monotonic() - start < 2
    closed = runner.run(write_runbook(one_step("http.check", f"{{url: 'http://127.0.0.1:{free_port()}/'}}")))
    assert closed.state == "failed" and closed.exit_code == ExitCode.UNREACHABLE


def test_http_check_retries_unreachable_target(runner, write_runbook):
    port = free_port()
    rb = write_runbook(
        one_step("http.check", f"{{url: 'http://127.0.0.1:{port}/'}}", "    retry: {attempts: 3, backoff: 50ms}\n")
    )
    result = runner.run(rb)
    assert result.steps[0].attempts == 3


def test_wait_duration(runner, write_runbook):
    start = time.monotonic()
    result = runner.run(write_runbook(one_step("wait", "{duration: 300ms}")))
    assert result.state == "succeeded" and 0.29 <= time.monotonic() - start < 2


def test_wait_until_http_and_tcp(runner, write_runbook, web):
    result = runner.run(write_runbook(one_step("wait", f"{{until: {{http: '{web}/web/health'}}, timeout: 5s}}")))
    assert result.state == "succeeded" and result.steps[0].outputs["checks"] == 1
    host_port = web.removeprefix("http://")
    assert runner.run(write_runbook(one_step("wait", f"{{until: {{tcp: '{host_port}'}}}}"))).state == "succeeded"


def test_wait_until_gives_up_after_timeout(runner, write_runbook):
    port = free_port()
    start = time.monotonic()
    result = runner.run(
        write_runbook(one_step("wait", f"{{until: {{tcp: '127.0.0.1:{port}'}}, timeout: 600ms, interval: 100ms}}"))
    )
    assert result.state == "failed" and "still not ready" in result.error
    assert time.monotonic() - start < 3


def test_wait_until_port_opens_later(runner, write_runbook):
    port = free_port()

    def open_later() -> None:
        time.sleep(0.5)
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen()
        time.sleep(3)
        srv.close()

    threading.Thread(target=open_later, daemon=True).start()
    result = runner.run(
        write_runbook(one_step("wait", f"{{until: {{tcp: '127.0.0.1:{port}'}}, timeout: 5s, interval: 100ms}}"))
    )
    assert result.state == "succeeded" and result.steps[0].outputs["checks"] > 1


def test_exec_env_cwd_and_outputs(runner, write_runbook, tmp_path, monkeypatch):
    monkeypatch.setenv("ERPOPS_TEST_SECRET", "s3cr3t-value")
    rb = write_runbook(
        one_step(
            "exec",
            f"{{argv: [sh, -c, 'pwd; echo $GREETING; test \"${{#PASS}}\" = 12 && echo secret-ok; echo err >&2'],"
            f" env: {{GREETING: hi}}, secret_env: {{PASS: 'env:ERPOPS_TEST_SECRET'}}, cwd: '{tmp_path}'}}",
        )
    )
    result = runner.run(rb)
    out = result.steps[0].outputs
    assert result.state == "succeeded"
    assert out["stdout_tail"].splitlines() == [str(tmp_path), "hi", "secret-ok"]
    assert out["stderr_tail"] == "err" and out["exit_code"] == 0


def test_exec_check_false_keeps_exit_code(runner, write_runbook):
    result = runner.run(write_runbook(one_step("exec", "{argv: [sh, -c, 'exit 4'], check: false}")))
    assert result.state == "succeeded" and result.steps[0].outputs["exit_code"] == 4


def test_exec_missing_program(runner, write_runbook):
    result = runner.run(write_runbook(one_step("exec", "{argv: [no-such-program-xyz]}")))
    assert result.state == "failed" and "command not found: no-such-program-xyz" in result.error


def test_a_secret_on_a_command_line_is_refused_naming_the_step_once(runner, write_runbook, monkeypatch):
    """Regression: the error read "step cmdline: step cmdline: the command line ..."."""
    monkeypatch.setenv("ERPOPS_TEST_SECRET", "s3cr3t-value-42")
    rb = write_runbook(
        HEADER
        + "params:\n  token: {type: secret, default: 'env:ERPOPS_TEST_SECRET'}\n"
        + "steps:\n  - {id: cmdline, action: exec, with: {argv: [echo, '{{ params.token }}']}}\n"
    )
    result = runner.run(rb)
    assert result.state == "failed" and result.error is not None
    assert result.error.startswith("step cmdline: the command line of echo would contain a secret"), result.error
    assert result.error.count("step cmdline") == 1 and "s3cr3t" not in result.error
