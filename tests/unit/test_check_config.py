"""`kafka-sse-gateway --check-config` warns of what the start warns of (web/cli.py)."""
from web import cli


def test_check_config_warns_of_a_password_sent_in_clear_as_the_start_does(
        monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {"KAFKA_BROKERS": "kafka-1:9092", "KAFKA_SECURITY_PROTOCOL":
                        "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
                        "KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD": "pw",
                        "SSE_MAX_CLIENT": "5"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: unknown variable SSE_MAX_CLIENT" in err
    assert "warning: KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT" in err and "kafka-1" in err


def test_make_run_takes_its_ports_from_the_configuration_the_gateway_reads(
        monkeypatch, tmp_path, capsys):
    """scripts/run-demo waits for the gateway's /health and prints its curl and grpcurl lines:
    with HTTP_PORT and GRPC_PORT set in .env (not the environment) it waited 30 s on :8084 and
    printed the wrong ports. It reads them from `--check-config`, which reads .env too."""
    from pathlib import Path
    script = (Path(__file__).parents[2] / "scripts" / "run-demo").read_text()
    assert "${HTTP_PORT:-" not in script and "${GRPC_PORT:-" not in script
    assert "kafka-sse-gateway --check-config" in script
    monkeypatch.chdir(tmp_path)
    for name in ("HTTP_PORT", "GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("HTTP_PORT=18089\nGRPC_PORT='19099'\n")
    assert cli.main(["--check-config"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "HTTP_PORT=18089" in printed and "GRPC_PORT=19099" in printed


def test_make_run_reads_kafka_brokers_from_dotenv_as_the_gateway_does(tmp_path):
    """scripts/run-demo decides whether to start a Kafka of its own from KAFKA_BROKERS in the
    environment or .env. It read .env with `grep '^KAFKA_BROKERS='`: a value in quotes (which
    the README allows) reached the gateway with its quotes, and the demo stopped with
    `invalid configuration: KAFKA_BROKERS='"127.0.0.1:9092"'`; an `export KAFKA_BROKERS=...`
    line (read by the gateway) was not seen, so the demo started a Kafka of its own and the
    gateway read that one instead of the .env's."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).parents[2]
    (line,) = [line for line in (root / "scripts" / "run-demo").read_text().splitlines()
               if line.startswith("brokers=")]
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKERS"}
    env["PYTHONPATH"] = str(root)
    run = ["bash", "-c", f'BIN="{Path(sys.executable).parent}"; {line}; printf %s "$brokers"']

    def brokers(dotenv: str, **environ) -> str:
        (tmp_path / ".env").write_text(dotenv)
        result = subprocess.run(run, cwd=tmp_path, env={**env, **environ},
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert brokers('KAFKA_BROKERS="kafka-1:9092,kafka-2:9092"\n') == "kafka-1:9092,kafka-2:9092"
    assert brokers("export KAFKA_BROKERS='kafka-1:9092'\n") == "kafka-1:9092"
    assert brokers("KAFKA_BROKERS = kafka-1:9092\n") == "kafka-1:9092"
    assert brokers("# none\n") == ""                                     # a Kafka of its own
    assert brokers("KAFKA_BROKERS=k:1\n", KAFKA_BROKERS="env:9092") == "env:9092"   # env wins


def test_check_config_into_a_closed_pipe_prints_no_traceback(tmp_path):
    """`kafka-sse-gateway --check-config | head -1` printed a BrokenPipeError traceback when
    head had gone before the configuration was written. The reader is gone here from the
    start, so the write always fails."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "web.cli", "--check-config"],
                                cwd=tmp_path, stdout=write, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                                timeout=30)
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    assert result.returncode == 0


def test_make_run_shows_a_grpcurl_command_only_when_there_is_a_grpcurl(tmp_path):
    """Without Go, make run builds no grpcurl, yet the demo printed
    `<checkout>/.cache/bin/grpcurl -plaintext localhost:9094 ...` as a command to try, which
    failed with 'No such file or directory'. It now says how to get one instead."""
    import subprocess
    from pathlib import Path
    script = (Path(__file__).parents[2] / "scripts" / "run-demo").read_text()
    block = script[script.index("\ntransport=") + 1:script.index("\ncat >&2 <<TXT")]
    fake = tmp_path / "grpcurl"

    def try_line(grpcurl: Path, cert: str = "") -> str:
        return subprocess.run(["bash", "-c", f'GRPCURL="{grpcurl}"; grpc_port=9094; '
                               f'grpc_cert="{cert}"; ' + block + '\nprintf %s "$grpc_try"'],
                              capture_output=True, text=True, timeout=10).stdout

    missing = try_line(fake)
    assert str(fake) not in missing and "Go" in missing and "grpcurl" in missing, missing
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert try_line(fake) == f"{fake} -plaintext localhost:9094 " \
                             "sse.SSEManagementService/GetStats"
    # GRPC_TLS_CERT_FILE set: grpcurl trusts that certificate, quoted for the shell
    assert try_line(fake, "/etc/my certs/grpc.pem") == \
        f"{fake} -cacert /etc/my\\ certs/grpc.pem localhost:9094 sse.SSEManagementService/GetStats"


def test_make_run_with_auth_required_shows_stream_commands_that_carry_a_token():
    """`AUTH_MODE=required ... make run` (the README's way to try auth) printed
    `curl -N http://localhost:8084/events` to try, which is a 401 in that mode."""
    import subprocess
    from pathlib import Path
    script = (Path(__file__).parents[2] / "scripts" / "run-demo").read_text()
    start, end = script.index("\nbearer="), script.index("\nTXT\n", script.index("cat >&2"))
    block = script[start:end + 5].replace("cat >&2", "cat")

    def shown(mode: str) -> list[str]:
        return subprocess.run(["bash", "-c", f"port=8084 grpc_try=x auth_mode={mode}\n{block}"],
                              capture_output=True, text=True, timeout=10).stdout.splitlines()

    streams = [line.strip() for line in shown("required") if "/events" in line]
    assert len(streams) == 3
    assert all(line.startswith('curl -N -H "Authorization: Bearer $TOKEN" "http://localhost:')
               for line in streams), streams
    assert any("README" in line and "TOKEN" in line for line in shown("required"))
    for mode in ("off", "optional"):
        assert "curl -N \"http://localhost:8084/events\"" in [s.strip() for s in shown(mode)]
        assert not any("TOKEN" in line for line in shown(mode))


def test_check_config_warns_of_trusting_every_address_and_an_open_management_api(
        monkeypatch, tmp_path, capsys):
    """Both were said only by each worker once it ran (or not at all): a reviewer running
    --check-config before a deploy saw nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, ::/0")
    monkeypatch.setenv("GRPC_HOST", "0.0.0.0")
    assert cli.main(["--check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: TRUSTED_PROXIES trusts every address" in err
    assert "warning: GRPC_HOST=0.0.0.0 without GRPC_AUTH_TOKEN" in err


def test_narrow_proxies_and_a_token_over_tls_or_on_loopback_are_not_warned_of(
        monkeypatch, tmp_path, capsys):
    from tests.unit.pki import make_pki
    pki = make_pki(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("GRPC_AUTH_TOKEN", "a-long-management-token")
    monkeypatch.setenv("GRPC_HOST", "0.0.0.0")
    assert cli.main(["--check-config"]) == 0
    [warned] = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert "GRPC_AUTH_TOKEN crosses the network in clear text" in warned      # no TLS
    monkeypatch.setenv("GRPC_TLS_CERT_FILE", pki["server_cert"])
    monkeypatch.setenv("GRPC_TLS_KEY_FILE", pki["server_key"])
    assert cli.main(["--check-config"]) == 0
    monkeypatch.delenv("GRPC_AUTH_TOKEN")
    monkeypatch.setenv("GRPC_HOST", "127.0.0.1")
    assert cli.main(["--check-config"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_check_config_that_cannot_write_says_so_without_a_traceback(capfd):
    """`--check-config > /dev/full` printed an OSError traceback (a packaging audit)."""
    import os
    import sys

    from web import cli
    saved = os.dup(sys.stdout.fileno())
    try:
        with open("/dev/full", "w") as full:
            os.dup2(full.fileno(), sys.stdout.fileno())
            code = cli.main(["--check-config"])
    finally:
        os.dup2(saved, sys.stdout.fileno())
        os.close(saved)
    assert code == 1
    assert "cannot write the configuration: No space left on device" in capfd.readouterr().err


def test_check_config_says_the_auth_warnings_a_start_logs(monkeypatch, tmp_path, capsys):
    """A start logged both (each worker's first); --check-config said nothing (the
    configuration audit)."""
    monkeypatch.chdir(tmp_path)
    for name, value in {"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256",
                        "AUTH_JWT_SECRET": "s" * 40, "AUTH_COOKIE_NAME": "tok"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: AUTH_TICKET_SECRET is not set" in err
    assert "warning: AUTH_COOKIE_NAME is set but CORS_ALLOWED_ORIGINS=*" in err
    monkeypatch.setenv("AUTH_TICKET_SECRET", "t" * 40)
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://app.example")
    assert cli.main(["--check-config"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_check_config_warns_of_a_limit_that_can_never_refuse(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {"SSE_MAX_CLIENTS": "10", "SSE_MAX_CLIENTS_PER_IP": "50",
                        "HTTP_MAX_PENDING": "10", "HTTP_MAX_PENDING_PER_IP": "11"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--check-config"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 2
    assert "SSE_MAX_CLIENTS_PER_IP=50" in warned[0] and "SSE_MAX_CLIENTS=10" in warned[0]
    assert "HTTP_MAX_PENDING_PER_IP=11" in warned[1] and "HTTP_MAX_PENDING=10" in warned[1]
    monkeypatch.setenv("SSE_MAX_CLIENTS_PER_IP", "10")
    monkeypatch.setenv("HTTP_MAX_PENDING_PER_IP", "10")
    assert cli.main(["--check-config"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_check_config_warns_of_a_per_subject_limit_above_the_instance(
        monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {"AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256",
                        "AUTH_JWT_SECRET": "s" * 40, "AUTH_TICKET_SECRET": "t" * 40,
                        "SSE_MAX_CLIENTS": "100",
                        "SSE_MAX_CLIENTS_PER_SUBJECT": "101"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--check-config"]) == 0
    [warned] = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert "SSE_MAX_CLIENTS_PER_SUBJECT=101 is above SSE_MAX_CLIENTS=100" in warned
