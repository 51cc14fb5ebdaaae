"""The README's grpcurl commands, run verbatim (port and client id substituted) by real grpcurl.

grpcurl is built by scripts/install-grpcurl (`go install ...@<pinned>` into .cache/bin), which
scripts/test-setup runs; these tests build it themselves when Go is there and it is not, and
skip only where there is no Go toolchain.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from tests.harness import ROOT, free_port
from tests.sse import SSEClient

pytestmark = pytest.mark.e2e

GRPCURL = ROOT / ".cache" / "bin" / "grpcurl"
TOKEN = "grpcurl-e2e-token"

# The seed README's four commands, line continuations joined: ours must show them as written.
SEED_COMMANDS = [
    "grpcurl -plaintext localhost:9094 sse.SSEManagementService/GetStats",
    "grpcurl -plaintext -d '{\"limit\": 50, \"offset\": 0}' localhost:9094 "
    "sse.SSEManagementService/GetClients",
    "grpcurl -plaintext -d '{\"client_id\": \"abc-123\"}' localhost:9094 "
    "sse.SSEManagementService/DisconnectClient",
    "grpcurl -plaintext localhost:9094 sse.SSEManagementService/GetHealth",
]
# The token form the README documents (GRPC_AUTH_TOKEN set in the operator's shell).
TOKEN_COMMAND = ('grpcurl -plaintext -H "authorization: Bearer $GRPC_AUTH_TOKEN" '
                 "localhost:9094 sse.SSEManagementService/GetStats")


def _squeeze(command: str) -> str:
    return re.sub(r"\s+", " ", command).strip()


def readme_commands() -> list[str]:
    """Every grpcurl command in the README's "Management API (gRPC)" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Management API (gRPC)", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("grpcurl "):
                commands.append(_squeeze(line))
    return commands


@pytest.fixture(scope="module")
def grpcurl():
    if not GRPCURL.exists() and shutil.which("go"):
        subprocess.run([str(ROOT / "scripts" / "install-grpcurl")], check=False, timeout=900)
    if not GRPCURL.exists():
        if shutil.which("go") or os.environ.get("CI") == "true":
            pytest.fail("scripts/install-grpcurl did not build .cache/bin/grpcurl")
        pytest.skip("no Go toolchain to build grpcurl with (scripts/install-grpcurl)")
    return GRPCURL


def run(command: str, port: int, token=None, **replace) -> subprocess.CompletedProcess:
    """The command as an operator's shell runs it, on this test's port."""
    command = command.replace("localhost:9094", f"localhost:{port}")
    for old, new in replace.items():
        command = command.replace(old, new)
    env = {**os.environ, "PATH": f"{GRPCURL.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if token is not None:
        env["GRPC_AUTH_TOKEN"] = token
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env,
                          timeout=30)


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def command_for(method: str, commands) -> str:
    (command,) = [c for c in commands
                  if c.endswith(f"/{method}") and " -H " not in c and "-cacert" not in c]
    return command


def test_the_readme_shows_the_seed_commands_as_written():
    commands = readme_commands()
    for command in SEED_COMMANDS:
        assert command in commands, f"README lacks: {command}"


def test_the_readme_commands_work_against_a_running_service(grpcurl, topics, service):
    svc = service(list(topics("curl").values()), expect_partitions=3, GRPC_PORT=free_port())
    port = svc.grpc_port
    stream = SSEClient(f"{svc.url}/events?history=false", timeout=10)
    stream.read_until(lambda evs: stream.parser.comments, timeout=10)
    (client_id,) = [c.split()[1] for c in stream.parser.comments if c.startswith("client ")]
    commands = readme_commands()

    health = ok_json(run(command_for("GetHealth", commands), port))
    assert health["status"] == "ok" and health["kafka"]["state"] == "connected"

    deadline = time.monotonic() + 10
    while True:
        page = ok_json(run(command_for("GetClients", commands), port))
        if client_id in [c["id"] for c in page.get("clients", [])]:
            break
        assert time.monotonic() < deadline, page
        time.sleep(0.1)
    stats = ok_json(run(command_for("GetStats", commands), port))
    assert page["total"] == stats["clients"] == svc.stats()["clients"] == 1
    assert stats["kafka_state"] == "connected"
    assert stats["events_dropped"] == "0"                # zeros are printed, not left out

    disconnect = command_for("DisconnectClient", commands)
    unknown = run(disconnect, port)                       # abc-123: no such client
    assert unknown.returncode != 0 and "Code: NotFound" in unknown.stderr, unknown.stderr
    assert "abc-123" in unknown.stderr
    done = ok_json(run(disconnect, port, **{"abc-123": client_id}))
    assert done == {"client_id": client_id, "disconnected": True}
    stream.read_until(lambda evs: False, timeout=5)
    assert stream.closed, "DisconnectClient did not end the stream"

    seed = {command_for(m, commands) for m in ("GetStats", "GetClients", "DisconnectClient",
                                               "GetHealth")}
    for command in commands:          # any further example (e.g. grpc.health.v1) works too
        if command not in seed and " -H " not in command and "-cacert" not in command:
            ok_json(run(command, port))


def test_the_token_form_of_the_readme(grpcurl, topics, service):
    svc = service(list(topics("curlauth").values()), expect_partitions=3,
                  GRPC_PORT=free_port(), GRPC_AUTH_TOKEN=TOKEN)
    stats = ok_json(run(TOKEN_COMMAND, svc.grpc_port, token=TOKEN))
    assert stats["kafka_state"] == "connected"
    denied = run(TOKEN_COMMAND, svc.grpc_port, token="wrong")
    assert denied.returncode != 0 and "Code: Unauthenticated" in denied.stderr, denied.stderr
    plain = run(SEED_COMMANDS[0], svc.grpc_port)
    assert plain.returncode != 0 and "Code: Unauthenticated" in plain.stderr, plain.stderr
    # grpc.health.v1 stays open without the token
    health = run("grpcurl -plaintext localhost:9094 grpc.health.v1.Health/Check", svc.grpc_port)
    assert ok_json(health) == {"status": "SERVING"}

    documented = [c for c in readme_commands() if " -H " in c and "-cacert" not in c]
    if not documented:
        pytest.skip("the README does not show the -H token form yet")
    for command in documented:
        result = run(command, svc.grpc_port, token=TOKEN, **{"<token>": TOKEN})
        if "/DisconnectClient" in command:      # abc-123 again: authorised, and not found
            assert "Code: NotFound" in result.stderr, result.stderr
        else:
            ok_json(result)


def test_the_tls_form_of_the_readme(grpcurl, topics, service, tmp_path):
    """GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: the README's -cacert command is served, the
    -plaintext ones fail at the connection, and a client that does not trust the certificate
    is refused too."""
    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    svc = service(list(topics("curltls").values()), expect_partitions=3,
                  GRPC_PORT=free_port(), GRPC_AUTH_TOKEN=TOKEN,
                  GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"])
    (command,) = [c for c in readme_commands() if "-cacert" in c and " -cert " not in c]
    stats = ok_json(run(command, svc.grpc_port, token=TOKEN,
                        **{"grpc-cert.pem": pki["server_cert"]}))
    assert stats["kafka_state"] == "connected"
    denied = run(command, svc.grpc_port, token="wrong", **{"grpc-cert.pem": pki["server_cert"]})
    assert "Code: Unauthenticated" in denied.stderr, denied.stderr
    plain = run(TOKEN_COMMAND, svc.grpc_port, token=TOKEN)
    assert plain.returncode != 0 and "Code:" not in plain.stderr, plain.stderr  # no call made
    stranger = run(command, svc.grpc_port, token=TOKEN, **{"grpc-cert.pem": pki["ca"]})
    assert stranger.returncode != 0 and "certificate" in stranger.stderr, stranger.stderr


def test_the_client_certificate_form_of_the_readme(grpcurl, topics, service, tmp_path):
    """GRPC_TLS_CLIENT_CA_FILE: the README's -cert command is served without a token; without
    a client certificate, or with one another CA issued, grpcurl gets no connection."""
    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    svc = service(list(topics("curlmtls").values()), expect_partitions=3, GRPC_PORT=free_port(),
                  GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"],
                  GRPC_TLS_CLIENT_CA_FILE=pki["cert"])        # self-signed: its own CA
    (command,) = [c for c in readme_commands() if " -cert " in c]
    files = {"grpc-cert.pem": pki["server_cert"]}
    mine = {"client-cert.pem": pki["cert"], "client-key.pem": pki["key"]}
    stats = ok_json(run(command, svc.grpc_port, **files, **mine))
    assert stats["kafka_state"] == "connected"
    bare = command.replace(" -cert client-cert.pem -key client-key.pem", "")
    assert bare != command
    strangers = {"client-cert.pem": pki["ca"], "client-key.pem": pki["ca_key"]}
    for refused in (run(bare, svc.grpc_port, **files),
                    run(command, svc.grpc_port, **files, **strangers)):
        assert refused.returncode != 0 and "Code:" not in refused.stderr, refused.stderr
        assert "Failed to dial" in refused.stderr, refused.stderr


def test_connections_that_fail_the_tls_handshake_do_not_fill_the_log(topics, service, tmp_path):
    """gRPC's core logged a line for each (`Handshake failed with error SSL_ERROR_SSL`), in its
    own format under LOG_FORMAT=json, for anyone who can reach the port: 12,944 in 5 s were
    2.65 MB of log (a gRPC audit)."""
    import socket

    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    svc = service(list(topics("tlsnoise").values()), expect_partitions=3, GRPC_PORT=free_port(),
                  LOG_FORMAT="json",
                  GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"])
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", svc.grpc_port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                sock.recv(100)
            except OSError:
                pass
    time.sleep(1)
    lines = svc.log_path.read_text(errors="replace").splitlines()
    assert sum("Handshake failed" in line for line in lines) < 25, lines[-5:]
    for line in lines:          # LOG_FORMAT=json: every line on stderr is one JSON object
        assert not line.strip() or isinstance(json.loads(line), dict), line



def test_malformed_http2_headers_do_not_fill_the_log(topics, service):
    """gRPC's core logs its HPACK parser's errors at ERROR: one line (its own format, not JSON)
    per HEADERS frame with `:status: abc`, token or none, and the connection stays open. One
    stranger's connection wrote 9.7 MB of log in 5 s (a fuzz run)."""
    import socket
    svc = service(list(topics("h2noise").values()), expect_partitions=3, GRPC_PORT=free_port(),
                  LOG_FORMAT="json", GRPC_AUTH_TOKEN="t" * 20)
    preface = bytes.fromhex("505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000000040000000000")
    with socket.create_connection(("127.0.0.1", svc.grpc_port), timeout=5) as sock:
        sock.sendall(preface)
        for n in range(200):        # a HEADERS frame on streams 1, 3, 5, ...
            sock.sendall(bytes.fromhex("0000050105") + (2 * n + 1).to_bytes(4, "big")
                         + bytes.fromhex("0803616263"))
    time.sleep(1)
    lines = svc.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in lines if "hpack" in line], lines[-3:]
    for line in lines:          # LOG_FORMAT=json: every line on stderr is one JSON object
        assert not line.strip() or isinstance(json.loads(line), dict), line

@pytest.mark.parametrize("tls", [False, True, "mutual"], ids=["plaintext", "tls", "mutual"])
def test_the_grpcurl_line_make_run_prints_works_with_a_management_token(grpcurl, kafka, tls,
                                                                         tmp_path):
    """`make run` printed its grpcurl line without the token header, so with GRPC_AUTH_TOKEN
    set (in .env, say) the line it offered was refused with Unauthenticated; with TLS on, it
    trusts the service's certificate instead of asking for plaintext; with client
    certificates, it presents the operator's (client-cert.pem and client-key.pem)."""
    token = "demo-token-0123456789abcdef"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_", "GRPC_", "AUTH_"))}
    env.update(KAFKA_BROKERS=kafka.bootstrap, HTTP_HOST="127.0.0.1", HTTP_PORT=str(free_port()),
               GRPC_PORT=str(free_port()), GRPC_AUTH_TOKEN=token, WORKERS="1",
               DEMO_RATE="1", GRPCURL=str(grpcurl))
    if tls:
        from tests.unit.pki import make_pki
        pki = make_pki(tmp_path)
        env.update(GRPC_TLS_CERT_FILE=pki["server_cert"], GRPC_TLS_KEY_FILE=pki["server_key"])
        if tls == "mutual":
            env.update(GRPC_TLS_CLIENT_CA_FILE=pki["cert"])     # self-signed: its own CA
    demo = subprocess.Popen([ROOT / "scripts" / "run-demo"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    said = []
    try:
        for line in demo.stderr:
            said.append(line)
            if "Ctrl-C stops everything" in line:
                break
        (command,) = [line.strip() for line in said if "GetStats" in line]
        assert token not in "".join(said)           # the shell supplies it, never the screen
        assert ("-plaintext" in command) is not bool(tls)
        assert (" -cert client-cert.pem -key client-key.pem " in command) is (tls == "mutual")
        if tls == "mutual":
            command = command.replace("client-cert.pem", pki["cert"]).replace(
                "client-key.pem", pki["key"])
        deadline, result = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                    timeout=20, env={**os.environ, "GRPC_AUTH_TOKEN": token})
            if result.returncode == 0:
                break
            time.sleep(0.5)             # the management API may come up after /health
        assert result is not None and result.returncode == 0, f"{command}\n{result.stderr}"
        assert "clients" in json.loads(result.stdout)
    finally:
        os.killpg(demo.pid, 15)
        demo.communicate(timeout=30)
