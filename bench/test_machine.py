"""The run's header names what ran: `.venv/bin/python -m pytest bench/test_machine.py`."""
from __future__ import annotations

import bench


def test_the_kafka_version_is_read_once_kafka_local_has_installed_it(tmp_path):
    assert bench.kafka_version(tmp_path) == "?"          # a fresh checkout, before setup
    (tmp_path / ".cache" / "kafka" / "lib-4.3.1-9829a7b4fbb3").mkdir(parents=True)
    assert bench.kafka_version(tmp_path) == "4.3.1-9829a7b4fbb3"
