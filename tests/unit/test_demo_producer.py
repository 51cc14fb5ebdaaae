"""scripts/demo_producer.py, make run's producer: a Kafka that does not answer is one line."""
from scripts import demo_producer
from tests.harness import free_port


def test_a_kafka_that_does_not_answer_is_one_line_saying_what_to_check(monkeypatch, capsys):
    """make run with KAFKA_BROKERS naming a Kafka that is down (README: 'Set KAFKA_BROKERS ...
    and make run uses your Kafka') ended with a 40-line KafkaTimeoutError traceback from
    demo_producer.py --topics-only after 30 s."""
    monkeypatch.setattr(demo_producer, "BOOTSTRAP_TIMEOUT_MS", 1000)
    brokers = f"127.0.0.1:{free_port()}"
    for args in (["--topics-only"], ["--count", "1"]):
        assert demo_producer.main(["--brokers", brokers, *args]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"demo: no Kafka answers at {brokers}"), line
        assert "KAFKA_BROKERS" in line
