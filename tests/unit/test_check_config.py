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
