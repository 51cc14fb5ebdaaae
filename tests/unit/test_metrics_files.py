"""The latency histogram's files in multiprocess mode (web/metrics.py WorkerFiles): one file per
worker, read by every scrape and by every worker as it starts."""
import json
import os

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict

from web.metrics import WorkerFiles

NAME = "sse_delivery_latency_seconds"


def _worker_file(directory, pid: int, count: float) -> None:
    """A histogram file as a worker's prometheus_client writes it (count observations)."""
    values = MmapedDict(os.path.join(directory, f"histogram_{pid}.db"))
    try:
        values.write_value(json.dumps([NAME, f"{NAME}_count", {}, "help"]), count, 0.0)
    finally:
        values.close()


def test_a_file_another_worker_has_created_but_not_yet_sized_is_skipped(tmp_path):
    """prometheus_client creates a worker's file empty, then sizes it: a worker starting (its
    import registers the collector, which reads every file) or a scrape in that moment failed
    with struct.error, and a worker killed in that moment left the file so for good."""
    _worker_file(tmp_path, 101, 3)
    (tmp_path / "histogram_102.db").touch()     # the other worker, between the two steps
    registry = CollectorRegistry(auto_describe=True)
    WorkerFiles(registry, path=str(tmp_path))   # registering reads the files (auto_describe)
    text = generate_latest(registry).decode()
    assert f"{NAME}_count 3.0" in text
