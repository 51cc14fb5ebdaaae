"""scripts/kafka-local, the demo's and the tests' broker: what it says when it cannot start."""
import os
import subprocess
from pathlib import Path

from tests.harness import free_port

ROOT = Path(__file__).parents[2]


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of this machine but `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = bin_dir / name
            if name not in missing and not link.exists() and os.access(
                    os.path.join(folder, name), os.X_OK):
                link.symlink_to(os.path.join(folder, name))
    return str(bin_dir)


def test_start_without_java_says_that_java_17_is_needed_before_anything_else(tmp_path):
    """README: make run needs Java 17. Without java, `make run` stopped with `stat: cannot
    statx ''`, `line 490: java: command not found` and `formatting the storage failed`,
    after fetching Kafka's jars through Maven (a minute) and formatting a data directory;
    without Maven too, it asked for Maven alone."""
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=_path_without(tmp_path, "java", "mvn"), KAFKA_LOCAL_HOME=str(tmp_path / "k"),
               KAFKA_LOCAL_PORT=str(free_port()))
    result = subprocess.run([ROOT / "scripts" / "kafka-local", "start"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("kafka-local: java not found: Java 17 or later"), line
    assert "JAVA_HOME" in line


def test_make_run_with_a_bad_variable_stops_before_starting_a_kafka(tmp_path):
    """make run read the configuration only after starting its Kafka: a typo in .env cost a
    Kafka start (on a first run, a minute of Maven) before the one line that names it. Here
    the machine has no java, so starting one would fail first and say so."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAVA_HOME", "KAFKA_BROKERS") and not k.startswith("HTTP_")}
    env.update(PATH=_path_without(tmp_path, "java", "mvn"), KAFKA_LOCAL_HOME=str(tmp_path / "k"),
               KAFKA_LOCAL_PORT=str(free_port()), HTTP_PORT="eighty")
    result = subprocess.run([ROOT / "scripts" / "run-demo"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "invalid configuration: HTTP_PORT='eighty'" in result.stderr, result.stderr
    assert "java" not in result.stderr and "Kafka on" not in result.stderr, result.stderr
