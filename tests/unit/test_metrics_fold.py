"""web/metrics_files.py: an ended worker's histogram file folded into one, its counts kept,
never while a scrape reads the files. The workers are real processes writing through
prometheus_client's multiprocess mode."""
import errno
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from web import metrics_files
from web.metrics_files import LockedCollector, retire

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
from prometheus_client import Histogram
h = Histogram("lat_seconds", "latency", buckets=(0.1, 1))
for value in {values}:
    h.observe(value)
"""


def worker(directory, values) -> int:
    """The pid of a process that observed `values` and ended."""
    before = set(directory.glob("histogram_*.db"))
    subprocess.run([sys.executable, "-c", WORKER.format(values=list(values))],
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}, check=True)
    [new] = set(directory.glob("histogram_*.db")) - before
    return int(new.stem.split("_")[1])


def scrape(directory) -> dict:
    registry = CollectorRegistry()
    registry.register(LockedCollector(str(directory)))
    return {(s.name, s.labels.get("le")): s.value for family in
            text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples}


def test_ended_workers_fold_into_one_file_and_the_sums_stay(tmp_path):
    pids = [worker(tmp_path, values) for values in ([0.05, 0.5], [2.0], [0.05, 0.05, 3.0])]
    whole = scrape(tmp_path)
    assert whole[("lat_seconds_count", None)] == 6
    for pid in pids[:2]:
        assert retire(str(tmp_path), pid) == 1
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        ["histogram_retired.db", f"histogram_{pids[2]}.db"])
    assert scrape(tmp_path) == pytest.approx(whole)      # added in another order
    assert retire(str(tmp_path), pids[2]) == 1
    assert [p.name for p in tmp_path.glob("*.db")] == ["histogram_retired.db"]
    assert scrape(tmp_path) == pytest.approx(whole)      # added in another order
    assert whole[("lat_seconds_bucket", "0.1")] == 3
    assert whole[("lat_seconds_sum", None)] == pytest.approx(5.65)


def test_no_fold_while_a_scrape_reads_the_files(tmp_path, monkeypatch, caplog):
    ended = tmp_path / f"histogram_{worker(tmp_path, [0.5])}.db"
    monkeypatch.setattr(metrics_files, "FOLD_WAIT", 0.05)
    fd = os.open(tmp_path / metrics_files.LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)          # a scrape in another worker
        assert retire(str(tmp_path), int(ended.stem.split("_")[1])) == 0
    finally:
        os.close(fd)
    assert ended.exists() and "stay in their own file" in caplog.text
    assert scrape(tmp_path)[("lat_seconds_count", None)] == 1


FULL_FOLD = """
import os, subprocess, sys
from web.metrics_files import retire
where, pid = sys.argv[1], int(sys.argv[2])
subprocess.run(["dd", "if=/dev/zero", f"of={where}/fill", "bs=4k"], capture_output=True)
print(retire(where, pid), flush=True)
"""


def test_a_fold_on_a_full_filesystem_leaves_the_file_and_the_master_alive(tmp_path, caplog):
    """The retired file is a sparse map: on a full /dev/shm the master's first write into it
    was SIGBUS, the master died without a word and every stream of the instance with it.
    Here in a 256 KiB tmpfs of its own (a mount namespace: root and unshare(1) needed)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        if os.environ.get("CI") == "true":
            pytest.fail("root and unshare(1) are needed for the full-filesystem fold test")
        pytest.skip("needs root and unshare(1)")
    pid = worker(tmp_path, [0.05, 0.5])
    tmpfs = tmp_path / "tmpfs"
    tmpfs.mkdir()
    script = (f"mount -t tmpfs -o size=256k tmpfs {tmpfs} && "
              f"cp --sparse=always {tmp_path}/histogram_{pid}.db {tmpfs}/ && "
              f"exec {sys.executable} -c '{FULL_FOLD}' {tmpfs} {pid}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["0"], done.stdout
    assert "stay in" in done.stderr and "No space left" in done.stderr, done.stderr[-2000:]


OWN_FILES = """
import os, sys
import web.metrics as m
m.observe_write(1)
m.UNFINISHED_CLOSED.labels("request_timeout").inc()
where, pid = sys.argv[1], os.getpid()
sizes = [os.stat(f"{where}/{kind}_{pid}.db").st_blocks * 512 if os.path.exists(
    f"{where}/{kind}_{pid}.db") else 0 for kind in ("histogram", "counter")]
print("alive", *sizes, flush=True)
print(m.unrecorded(), file=sys.stderr)
"""


def _own_files(directory) -> subprocess.CompletedProcess:
    """A process importing web/metrics.py as a worker does, then recording one of each."""
    return subprocess.run([sys.executable, "-c", OWN_FILES, str(directory)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "PROMETHEUS_MULTIPROC_DIR": str(directory)})


def test_a_worker_has_real_room_for_its_metric_files_before_it_writes_them(tmp_path):
    """prometheus_client's files are sparse maps: a write into a page the filesystem then has
    no room for is SIGBUS. The worker allocates them whole first."""
    done = _own_files(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    alive, histogram, counter = done.stdout.split()
    assert (alive, int(histogram) >= 65536, int(counter) >= 65536) == ("alive", True, True)


def test_a_worker_on_a_full_filesystem_serves_without_its_metric_files(tmp_path):
    """On a full /dev/shm (Docker gives it 64 MB) a worker's import of web/metrics.py wrote
    the header of its histogram file through the map: SIGBUS, before it served anything, and
    gunicorn started the next one into the same death. Now the worker records no metrics of
    its own, and says why and what to do. In a 256 KiB tmpfs of its own (root, unshare(1))."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        if os.environ.get("CI") == "true":
            pytest.fail("root and unshare(1) are needed for the full-filesystem worker test")
        pytest.skip("needs root and unshare(1)")
    tmpfs = tmp_path / "tmpfs"
    tmpfs.mkdir()
    fill = ('import subprocess, sys\nsubprocess.run(["dd", "if=/dev/zero", '
            'f"of={sys.argv[1]}/fill", "bs=4k"], capture_output=True)\n')
    script = (f"mount -t tmpfs -o size=256k tmpfs {tmpfs} && "
              f"exec {sys.executable} -c '{fill + OWN_FILES}' {tmpfs}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "PROMETHEUS_MULTIPROC_DIR": str(tmpfs)})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["alive", "0", "0"], done.stdout
    assert "No space left" in done.stderr and "not recorded" in done.stderr, done.stderr[-2000:]


# -- from a mutation audit -----------------------------------------------------------------------

COUNTER_WORKER = """
from prometheus_client import Counter
Counter("closed", "closed", ["reason"]).labels("request_timeout").inc({count})
"""


def test_an_ended_workers_counter_file_is_folded_too_and_its_count_stays(tmp_path):
    """The workers write a counter (sse_unfinished_requests_closed) beside the histogram: left
    unfolded, each ended worker's counter file stayed in /dev/shm for good."""
    subprocess.run([sys.executable, "-c", COUNTER_WORKER.format(count=3)],
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, check=True)
    pid = worker(tmp_path, [0.5])
    [counter] = tmp_path.glob("counter_*.db")
    other = int(counter.stem.split("_")[1])
    assert retire(str(tmp_path), other) == 1 and retire(str(tmp_path), pid) == 1
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_retired.db",
                                                            "histogram_retired.db"]
    found = scrape(tmp_path)
    assert found[("closed_total", None)] == 3 and found[("lat_seconds_count", None)] == 1


def test_an_empty_file_of_a_worker_killed_as_it_made_it_is_removed_without_a_warning(
        tmp_path, caplog):
    """It holds nothing: kept, it was warned of at each fold and stayed for good."""
    (tmp_path / "histogram_4242.db").touch()
    assert retire(str(tmp_path), 4242) == 1
    assert list(tmp_path.glob("*.db")) == [] and "stay in" not in caplog.text


def test_a_worker_without_a_counter_file_is_folded_without_a_warning(tmp_path, caplog):
    """Most workers never count an unfinished request: its missing file is no trouble to
    report in the master's log at each worker's end."""
    pid = worker(tmp_path, [0.5])
    assert retire(str(tmp_path), pid) == 1
    assert caplog.records == []


def test_a_reused_pids_files_keep_their_counts_when_the_new_worker_reserves_room(tmp_path):
    """A pid is reused before its old worker's file was folded: emptied, the counts of that
    worker left the histogram, which fell (a reset to Prometheus)."""
    pid = worker(tmp_path, [0.05, 0.5])
    assert metrics_files.reserve_own(str(tmp_path), pid) is None
    assert scrape(tmp_path)[("lat_seconds_count", None)] == 2


def test_no_room_for_a_workers_files_leaves_none_and_another_error_is_raised(tmp_path,
                                                                             monkeypatch):
    """Without room the worker records nothing of its own (and says so); files it made and
    left would be mapped by prometheus_client all the same, and SIGBUS it. An error that is
    not about room (a permission) must stop the start, not pass for a full disk."""
    def full(fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(metrics_files, "allocate", full)
    assert metrics_files.reserve_own(str(tmp_path), 4242).errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []

    def denied(fd, size):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(metrics_files, "allocate", denied)
    with pytest.raises(PermissionError):
        metrics_files.reserve_own(str(tmp_path), 4242)


def test_a_file_that_cannot_be_read_whole_adds_nothing_to_the_retired_counts(tmp_path, caplog):
    """It stays (and is still counted where it is): had its first values been added before
    the bad one was met, the retired file would count them a second time."""
    from prometheus_client.mmap_dict import MmapedDict
    path = tmp_path / "histogram_4242.db"
    values = MmapedDict(str(path))
    try:
        values.write_value('["lat_seconds", "lat_seconds_count", {}, "h"]', 2.0, 0.0)
        values.write_value('["lat_seconds", "lat_seconds_sum", {}, "h"]', 0.5, 0.0)
    finally:
        values.close()
    data = path.read_bytes()
    at = data.index(b'["lat_seconds", "lat_seconds_sum"')
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])       # the second key is not UTF-8
    assert retire(str(tmp_path), 4242) == 0
    assert path.exists() and "stay in" in caplog.text
    assert not (tmp_path / "histogram_retired.db").exists()
