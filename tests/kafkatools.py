"""Helpers for tests that need Kafka's own clients or look at what the broker stored:
Kafka's Java console producer (from the jars scripts/kafka-local fetched), a kafka-python
transactional producer, and a reader of the record-batch headers in a partition's segment files."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tests.harness import ROOT

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")   # index = the batch attributes' codec bits

# C1 only, small serial heap, no perf file; plus a class-data-sharing archive (_cds_options):
# a console producer run takes ~1.5 s instead of ~3 s on this machine.
JAVA_OPTS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-XX:-UsePerfData",
             "-Xmx256m", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}"]


@lru_cache(maxsize=1)
def kafka_classpath() -> str:
    """`<lib dir>/*` of the Kafka jars (fetched through Maven by scripts/kafka-local if needed)."""
    result = subprocess.run([str(ROOT / "scripts" / "kafka-local"), "classpath"], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"kafka-local classpath failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def kafka_version() -> tuple[int, ...]:
    """The version of the jars (the lib dir is lib-<version>-<pom digest>)."""
    return tuple(int(n) for n in Path(kafka_classpath()).parent.name.split("-")[1].split("."))


def console_producer() -> list[str]:
    """The console producer's class and the option naming its client properties file, as the
    jars' version has them (KAFKA_LOCAL_VERSION): kafka.tools before 4.0, --producer.config
    before 4.1 (4.4 takes only --command-config)."""
    version = kafka_version()
    name = "org.apache.kafka.tools.ConsoleProducer" if version >= (4, 0) else \
        "kafka.tools.ConsoleProducer"
    return [name, "--command-config" if version >= (4, 1) else "--producer.config"]


def java_client_properties(config: dict | None, workdir: Path) -> dict:
    """kafka-python-style keywords (security_protocol, ssl_cafile, sasl_*) -> Java client properties.
    PEM files go in as PEM trust/key stores (a key store file is made in workdir); keys already in
    Java form (with dots) pass through."""
    props = {}
    for key, value in (config or {}).items():
        if value is None or key == "bootstrap_servers":
            continue
        if key == "security_protocol":
            props["security.protocol"] = value
        elif key == "ssl_cafile":
            props.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": value})
        elif key == "ssl_certfile":
            props.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": _pem_keystore(
                value, config.get("ssl_keyfile"), config.get("ssl_password"), workdir)})
            props["ssl.key.password"] = config.get("ssl_password") or _PEM_KEY_PASSWORD
        elif key in ("ssl_keyfile", "ssl_password"):
            continue
        elif key == "sasl_mechanism":
            props["sasl.mechanism"] = value
        elif key in ("sasl_plain_username", "sasl_plain_password"):
            continue
        elif "." in key:
            props[key] = value
        else:
            raise ValueError(f"no Java client property for {key!r}: give it in Java form (a.b.c)")
    if config and config.get("sasl_mechanism"):
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                  if config["sasl_mechanism"] == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        props["sasl.jaas.config"] = (f'{module} required username="{config["sasl_plain_username"]}" '
                                     f'password="{config["sasl_plain_password"]}";')
    return props


_PEM_KEY_PASSWORD = "kafkatools-pem"


def _pem_keystore(cert_file: str, key_file: str, password: str | None, workdir: Path) -> str:
    """Java's PEM key store wants certificate and encrypted PKCS#8 key in one file; Java 17 reads
    only the older PBE schemes (not openssl's default PBES2)."""
    out = workdir / "keystore.pem"
    key = subprocess.run(["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", key_file,
                          "-passin", f"pass:{password or ''}", "-passout",
                          f"pass:{password or _PEM_KEY_PASSWORD}"],
                         capture_output=True, text=True, check=True).stdout
    out.write_text(key + Path(cert_file).read_text())
    return str(out)


def java_produce(bootstrap: str, topic: str, values, *, compression="none", keys=None,
                 linger_ms=5000, batch_size=1 << 20, acks="all", config: dict | None = None,
                 timeout=180.0) -> None:
    """Produce `values` (str or bytes, one line each, no newlines) with Kafka's own Java producer
    (org.apache.kafka.tools.ConsoleProducer), one JVM for all of them, read from stdin.

    compression: none | gzip | snappy | lz4 | zstd (compression.type). With the long linger and
    large batch.size defaults, and no keys, all records land in ONE batch of one partition (the
    sticky partitioner; closing at end of input sends it). keys: one per value (str/bytes), to
    choose partitions by key. config: extra client settings, kafka-python-style (security_protocol,
    ssl_cafile, ssl_certfile/ssl_keyfile/ssl_password, sasl_mechanism, sasl_plain_username,
    sasl_plain_password) or Java properties ("max.request.size": ...).
    Raises RuntimeError with the producer's output if it fails (it exits non-zero when a send fails).
    """
    if compression not in CODECS:
        raise ValueError(f"compression must be one of {CODECS}, got {compression!r}")
    lines = [_line(v) for v in values]
    if keys is not None:
        keys = [_line(k) for k in keys]
        if len(keys) != len(lines) or any(b"\t" in k for k in keys):
            raise ValueError("keys: one per value, without tabs")
        lines = [k + b"\t" + v for k, v in zip(keys, lines)]
    with tempfile.TemporaryDirectory(prefix="kafkatools-") as workdir:
        props = {"compression.type": compression, "linger.ms": linger_ms, "batch.size": batch_size,
                 "acks": acks, "enable.idempotence": "false" if acks in ("0", "1", 0, 1) else "true",
                 **java_client_properties(config, Path(workdir))}
        properties = Path(workdir) / "producer.properties"
        properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        result = _run_console_producer(bootstrap, topic, lines, properties, compression, batch_size,
                                       linger_ms, acks, keys is not None, timeout)
    output = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0 or "ERROR" in output:
        raise RuntimeError(f"ConsoleProducer failed (exit {result.returncode}):\n{output[-3000:]}")


def _cds_archive() -> Path:
    """Where the console producer's class-data-sharing archive lives: in the lib dir (so a new set
    of jars gets a new one), named for the JVM build (another JDK records its own)."""
    java = Path(shutil.which("java") or "java").resolve()
    jvm = java.parent.parent / "lib" / "server" / "libjvm.so"
    stat = (jvm if jvm.exists() else java).stat()
    key = zlib.crc32(f"{java} {stat.st_size} {stat.st_mtime_ns}".encode())
    return Path(kafka_classpath().rstrip("*")) / f".cds-console-producer-{key:08x}.jsa"


def _cds_options() -> tuple[list[str], Path | None]:
    """JVM options mapping the archive, or recording one at exit (into a temporary file)."""
    archive = _cds_archive()
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"], None
    dump = archive.with_name(f"{archive.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    return [f"-XX:ArchiveClassesAtExit={dump}", "-Xlog:cds*=off"], dump


def _promote_cds(dump: Path) -> None:
    """Keep a recorded archive only if the JVM maps it (a truncated one crashes the JVM)."""
    try:
        trial = subprocess.run(["java", *JAVA_OPTS, "-Xshare:on", f"-XX:SharedArchiveFile={dump}",
                                "-cp", kafka_classpath(), "-version"], capture_output=True, timeout=60)
        if trial.returncode == 0 and not _cds_archive().exists():
            os.replace(dump, _cds_archive())
    finally:
        dump.unlink(missing_ok=True)


def _run_console_producer(bootstrap, topic, lines, properties, compression, batch_size, linger_ms,
                          acks, keyed, timeout):
    cds, dump = _cds_options()
    name, config_option = console_producer()
    command = ["java", *JAVA_OPTS, *cds, "-cp", kafka_classpath(), name,
               "--bootstrap-server", bootstrap, "--topic", topic, config_option, str(properties),
               # The tool's own defaults (linger 1000, batch 16384, no codec) win over the file's.
               "--compression-codec", compression, "--batch-size", str(batch_size),
               "--timeout", str(linger_ms), "--request-required-acks", str(acks)]
    if keyed:
        command += ["--reader-property", "parse.key=true", "--reader-property", "key.separator=\t"]
    try:
        result = subprocess.run(command, input=b"".join(line + b"\n" for line in lines),
                                capture_output=True, timeout=timeout)
    except BaseException:
        if dump:
            dump.unlink(missing_ok=True)
        raise
    if dump and result.returncode == 0:
        _promote_cds(dump)
    elif dump:
        dump.unlink(missing_ok=True)
    return result


def _line(value) -> bytes:
    data = value.encode() if isinstance(value, str) else bytes(value)
    if b"\n" in data or b"\r" in data:
        raise ValueError("the console producer reads one record per line: no newlines in values")
    return data


def transactional_produce(bootstrap, topic: str, batches, *, partition=0, transactional_id=None,
                          **client) -> list[list[int]]:
    """One kafka-python transactional producer runs `batches` in order: each is (values, commit)
    and becomes one transaction, committed or aborted. Returns each batch's record offsets (the
    transaction markers take the offsets in between). client: extra KafkaProducer settings."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(",") if isinstance(bootstrap, str)
                             else bootstrap,
                             transactional_id=transactional_id or f"test-{uuid.uuid4().hex[:12]}",
                             linger_ms=0, **client)
    offsets = []
    try:
        producer.init_transactions()
        for values, commit in batches:
            producer.begin_transaction()
            futures = [producer.send(topic, v.encode() if isinstance(v, str) else v,
                                     partition=partition) for v in values]
            producer.flush(timeout=30)
            offsets.append([fut.get(timeout=30).offset for fut in futures])
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=10)
    return offsets


def java_run(source: str, *args: str, timeout=180.0) -> str:
    """Run one of tests/java's single-file programs against Kafka's Java client jars; its
    output, or RuntimeError with it if it fails."""
    result = subprocess.run(["java", *JAVA_OPTS, "-cp", kafka_classpath(),
                             str(ROOT / "tests" / "java" / source), *args],
                            capture_output=True, timeout=timeout)
    output = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"{source} failed (exit {result.returncode}):\n{output[-3000:]}")
    return output


@dataclass(frozen=True)
class Batch:
    """The header of one record batch in a segment file (magic 2)."""
    base_offset: int
    last_offset: int
    records: int
    codec: str          # none, gzip, snappy, lz4, zstd
    transactional: bool
    control: bool       # a transaction marker


_HEADER = struct.Struct(">qiibIhiqqqhii")   # base offset .. records count: 61 bytes


def record_batches(log_dir, topic: str, partition: int) -> list[Batch]:
    """The record batches the broker stored for topic-partition under log_dir (a broker's log.dirs),
    in offset order, read from its .log segment files (they are readable while the broker runs)."""
    folder = Path(log_dir) / f"{topic}-{partition}"
    batches = []
    for segment in sorted(folder.glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            (base, length, _epoch, magic, _crc, attributes, last_delta, _ts, _max_ts, _pid, _pepoch,
             _seq, count) = _HEADER.unpack_from(data, pos)
            if length <= 0 or pos + 12 + length > len(data):
                break   # preallocated tail or a batch still being written
            if magic != 2:
                raise ValueError(f"{segment}: batch at {pos} has magic {magic}, expected 2")
            batches.append(Batch(base, base + last_delta, count, CODECS[attributes & 7],
                                 bool(attributes & 0x10), bool(attributes & 0x20)))
            pos += 12 + length
    return batches


def deny_topic(admin_bootstrap: str, topic: str, user: str, operation="READ") -> list:
    """Make `user` not authorized for `operation` on `topic` (secure broker, admin listener).
    Any ACL on a topic ends allow.everyone.if.no.acl.found for it, so this also allows everyone
    else everything there. Returns the ACLs to give to remove_acls (which undoes it)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType
    pattern = ResourcePattern(ResourceType.TOPIC, topic)
    acls = [ACL("User:*", "*", ACLOperation.ALL, ACLPermissionType.ALLOW, pattern),
            ACL(f"User:{user}", "*", getattr(ACLOperation, operation), ACLPermissionType.DENY, pattern)]
    admin = KafkaAdminClient(bootstrap_servers=[admin_bootstrap])
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    if result["failed"]:
        raise RuntimeError(f"creating ACLs failed: {result['failed']}")
    return acls


def remove_acls(admin_bootstrap: str, acls) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ACLFilter, ResourcePatternFilter
    filters = [ACLFilter(a.principal, a.host, a.operation, a.permission_type,
                         ResourcePatternFilter(a.resource_pattern.resource_type,
                                               a.resource_pattern.resource_name,
                                               a.resource_pattern.pattern_type)) for a in acls]
    admin = KafkaAdminClient(bootstrap_servers=[admin_bootstrap])
    try:
        admin.delete_acls(filters)
    finally:
        admin.close()


def set_scram_user(admin_bootstrap: str, user: str, password: str,
                   mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")) -> None:
    """Create a SCRAM user (or change its password) on a running secure broker, as the admin."""
    _alter_scram(admin_bootstrap, user, mechanisms, password)


def delete_scram_user(admin_bootstrap: str, user: str,
                      mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")) -> None:
    _alter_scram(admin_bootstrap, user, mechanisms, None)


def _alter_scram(admin_bootstrap, user, mechanisms, password):
    from kafka import KafkaAdminClient
    from kafka.admin import ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion
    kinds = [ScramMechanism[m.replace("-", "_")] for m in mechanisms]
    changes = [UserScramCredentialDeletion(user, k) if password is None
               else UserScramCredentialUpsertion(user, k, password) for k in kinds]
    admin = KafkaAdminClient(bootstrap_servers=[admin_bootstrap])
    try:   # one request per mechanism: the broker refuses two changes of a user in one
        errors = [admin.alter_user_scram_credentials([change])[user] for change in changes]
    finally:
        admin.close()
    if any(errors):
        raise RuntimeError(f"changing SCRAM user {user} failed: {errors}")


def ten_with_five_deleted(bootstrap: str, topic: str) -> None:
    """Records {"n": 0..9} in partition 0 of `topic`, then the first five deleted (the log
    start moved to 5, as retention would)."""
    from kafka import KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=0)
    for n in range(10):
        producer.send(topic, b'{"n": %d}' % n, partition=0)
    producer.flush(timeout=10)
    producer.close(timeout=5)
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.delete_records({TopicPartition(topic, 0): 5})
    finally:
        admin.close()
