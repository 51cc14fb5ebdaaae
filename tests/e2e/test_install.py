"""Installed as a user would: the built wheel in a fresh virtual environment outside the
repository, started with `kafka-sse-gateway` from an empty directory, against the test Kafka.

The project's dependencies come from a wheelhouse (.cache/wheelhouse, pinned to the versions
in the project's own venv): filled from the package index on the first run, offline after.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port, http_json
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
SOURCES = ("actors", "web", "rpc", "service", "proto", "setup.cfg", "pyproject.toml", "README.md",
           "LICENSE", ".env.example")


def _run(*args, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{result.stdout[-2000:]}"
                           f"\n{result.stderr[-3000:]}")
    return result.stdout


def _build_wheel(work: Path) -> Path:
    """Built from a copy of the sources, so the build leaves nothing in the repository."""
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, source / name)
    dist = work / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", dist, source)
    (wheel,) = dist.glob("kafka_sse_gateway-*.whl")
    return wheel


def _install(wheel: Path, venv: Path) -> None:
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]   # the project venv's pip, no ensurepip
    offline = [*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE, wheel]
    try:
        _run(*offline)
    except RuntimeError:
        pins = venv.parent / "pins.txt"
        pins.write_text(_run(sys.executable, "-m", "pip", "freeze", "--exclude-editable"))
        _forget_project(WHEELHOUSE)   # a stale copy would stand in for this build's metadata
        _run(sys.executable, "-m", "pip", "download", "-q", "-d", WHEELHOUSE, "-c", pins, wheel)
        _forget_project(WHEELHOUSE)
        _run(*offline)


def _forget_project(wheelhouse: Path) -> None:
    for old in wheelhouse.glob("kafka_sse_gateway-*"):
        old.unlink()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The console script in a fresh venv outside the repository, and an empty directory."""
    work = tmp_path_factory.mktemp("install")
    venv = work / "venv"
    _install(_build_wheel(work), venv)
    where = _run(venv / "bin" / "python", "-c", "import web; print(web.__file__)", cwd=work)
    assert where.startswith(str(venv)), where          # the installed package, not the sources
    empty = work / "empty"
    empty.mkdir()
    return venv / "bin" / "kafka-sse-gateway", empty


def _env(**values) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(
               ("KAFKA_", "SSE_", "GRPC_", "HTTP_", "ADMIN_", "CORS_", "RATE_LIMIT_", "LOG_"))}
    env.update({"PYTHONUNBUFFERED": "1"}, **{k: str(v) for k, v in values.items()})
    return env


def test_the_grpc_schema_and_the_variables_are_installed_beside_the_package(installed):
    """The README's grpcurl without reflection (-import-path ... -proto sse.proto) needs the
    schema, which only a checkout or the sdist had (a packaging audit)."""
    script, _empty = installed
    shared = script.parent.parent / "share" / "kafka-sse-gateway"
    assert (shared / "sse.proto").read_bytes() == (ROOT / "proto" / "sse.proto").read_bytes()
    assert (shared / ".env.example").read_bytes() == (ROOT / ".env.example").read_bytes()


def test_version_and_help(installed):
    script, empty = installed
    assert _run(script, "--version", cwd=empty).strip() == "kafka-sse-gateway 0.1.0"
    assert "--check-config" in _run(script, "--help", cwd=empty)


def test_check_config_masks_secrets_and_reads_dotenv(installed, tmp_path):
    script, _ = installed
    (tmp_path / ".env").write_text("ADMIN_PORT=9199\n")      # .env of the working directory
    result = subprocess.run([script, "--check-config"], cwd=tmp_path, capture_output=True,
                            text=True, env=_env(GRPC_AUTH_TOKEN="hunter2-secret-token"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "GRPC_AUTH_TOKEN=********" in lines and "ADMIN_PORT=9199" in lines
    assert "hunter2" not in result.stdout + result.stderr


def test_a_bad_variable_exits_2_with_one_line(installed):
    script, empty = installed
    for args in (["--check-config"], []):
        result = subprocess.run([script, *args], cwd=empty, capture_output=True, text=True,
                                env=_env(HTTP_PORT="eighty"), timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("kafka-sse-gateway: error: invalid configuration: "
                               "HTTP_PORT='eighty'"), line


def test_runs_from_an_empty_directory(installed, kafka, topics, producer, tmp_path):
    script, empty = installed
    topic = topics("installed")["installed"]
    port = free_port()
    log = open(tmp_path / "gateway.log", "wb")
    process = subprocess.Popen([script], cwd=empty, stdout=log, stderr=subprocess.STDOUT,
                               env=_env(KAFKA_BROKERS=kafka.bootstrap, KAFKA_TOPICS=topic,
                                        HTTP_HOST="127.0.0.1", HTTP_PORT=port, GRPC_PORT=0))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, tmp_path / "gateway.log")
        for path in ("/", "/static/app.js", "/openapi.json"):      # package data shipped
            assert _get_status(url + path) == 200, path
        client = SSEClient(f"{url}/events?history=false")
        client.read_until(lambda events: client.parser.comments, timeout=10)
        producer(topic, {"id": "installed-1", "type": "link.clicked", "data": {"n": 1}})
        producer.flush()
        events = client.read_count(1, timeout=15)
        assert any("installed-1" in event["data"] for event in events), events
        client.close()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    text = (tmp_path / "gateway.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert "Shutting down: Master" in text
    assert list(empty.iterdir()) == []                   # it wrote nothing where it ran


def _get_status(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def _wait_ready(url, process, log_path, timeout=60.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            status, last = http_json(url + "/readyz", timeout=2)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    pytest.fail(f"/readyz not 200 in {timeout} s (last: {last}):\n{log_path.read_text()[-3000:]}")
