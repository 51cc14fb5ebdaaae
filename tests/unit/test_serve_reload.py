"""SIGHUP and .env faults that used to end the master or mislead the operator (an operations
audit): each keeps the running instance and says what to do."""
import contextlib
import socket

import pytest

from tests.harness import free_port
from tests.unit.test_serve import _environ_of, master  # noqa: F401 - the fixture
from web import instance_dir, serve


@contextlib.contextmanager
def _listening():
    """A port some socket listens on, for the test's length."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_sighup_with_an_env_file_that_became_unreadable_keeps_the_master_running(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """README: on SIGHUP 'a bad value ... is logged and the running settings are kept'. A
    .env saved in Latin-1 (or chmod 000) is a SettingsError that _read_settings keeps the
    running settings for, but on_reload then calls unknown_variables(), which reads the
    .env again and raises: in gunicorn's Arbiter.reload that exception reaches the main
    loop ('Unhandled exception in main loop') and the master stops the whole instance."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    (tmp_path / ".env").write_bytes("KAFKA_CLIENT_ID=caf\xe9\n".encode("latin-1"))
    serve.gunicorn_config()                      # the reload's config: kept, logged
    assert "kept the running settings" in caplog.text
    serve.on_reload(master.server)               # must not raise: it would end the master


def test_a_sighup_that_moves_http_host_on_the_same_port_does_not_blame_another_process(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """The master listens on 0.0.0.0:P (HTTP_HOST's default). A SIGHUP after setting
    HTTP_HOST=127.0.0.1 (same HTTP_PORT) is refused with 'HTTP_PORT=P: 127.0.0.1:P is in use
    by another process: stop it or choose another HTTP_PORT': the process holding it is the
    gateway itself (its own listener, which a reload cannot re-bind while the old workers
    still hold it), so an operator at 3 a.m. goes hunting for a process that does not exist,
    or changes the port. Expected: keep the running settings, but say that the gateway itself
    listens there and a restart is needed to move the address."""
    port = free_port()
    running = master.settings.replace(http_host="0.0.0.0", http_port=port)
    serve.gunicorn_config(running)
    serve.on_starting(master.server)
    with socket.socket() as own:                 # the master's own listener
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.bind(("0.0.0.0", port))
        own.listen()
        monkeypatch.chdir(tmp_path)
        _environ_of(master, monkeypatch)
        monkeypatch.setenv("HTTP_HOST", "127.0.0.1")
        monkeypatch.setenv("HTTP_PORT", str(port))
        serve.gunicorn_config()
    assert "kept the running settings" in caplog.text
    assert "in use by another process" not in caplog.text, caplog.text


def test_a_sighup_to_a_grpc_port_held_by_another_process_is_said(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """At the start a GRPC_PORT held by another process is a warning of the master
    (web/serve.py on_starting -> grpc_problem). After a SIGHUP that moves GRPC_PORT to such a
    port, neither the master (_read_settings only counts non-EADDRINUSE gRPC problems, and
    on_reload never calls grpc_problem) nor the workers say anything at WARNING: every worker
    runs its management API as a standby (rpc/server.py Management.start / _retry: 'standing
    by' at INFO once, then `if self.standby and busy: continue` quietly for ever), so the
    management API is silently gone after the reload."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    master.server.logged.clear()
    with _listening() as port:                  # another process's
        monkeypatch.setenv("GRPC_PORT", str(port))
        serve.gunicorn_config()
        serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged] + [
        r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert any(f"GRPC_PORT={port}" in line for line in said), said


def _gunicorn_cfg(log_format, level="info"):
    from gunicorn.config import Config

    from actors.logs import gunicorn_logconfig
    from actors.settings import Settings
    cfg = Config()
    for key, value in (("errorlog", "-"), ("loglevel", level),
                       ("logger_class", serve.LOGGER_CLASS),
                       ("logconfig_dict",
                        gunicorn_logconfig(Settings.defaults(log_format=log_format)))):
        cfg.set(key, value)
    return cfg


def test_a_sighup_from_log_format_json_to_text_writes_each_gunicorn_line_once(capfd):
    """gunicorn's Arbiter.reload re-runs its logger's setup with the new config
    (Arbiter.setup -> Logger.setup). LOG_FORMAT=json's logconfig_dict (actors/logs.py
    gunicorn_logconfig) made `gunicorn.error` propagate to a JSON root handler; text gives {}
    and changes neither, while gunicorn adds its text handler: after a SIGHUP from json to
    text every gunicorn line of the master (and of the workers forked from it) is written
    twice, once as text and once as JSON."""
    from web.gunicorn_log import RedactingLogger
    log = RedactingLogger(_gunicorn_cfg("json"))
    log.setup(_gunicorn_cfg("text"))               # what a SIGHUP does
    capfd.readouterr()
    log.info("Booting worker with pid: 4242")
    lines = [line for line in capfd.readouterr().err.splitlines() if "4242" in line]
    assert len(lines) == 1, lines


def test_an_env_path_that_is_a_directory_is_said_not_silently_ignored(tmp_path):
    """`docker run -v ./prod.env:/app/.env` with a host path that does not exist makes docker
    create an empty *directory* at /app/.env. read_env_file (actors/settings/dotenv.py) treats
    anything but a regular file as 'missing' (`if not file.is_file(): return {}`) and
    env_file_warnings swallows the OSError, so the gateway starts on every default
    (KAFKA_BROKERS=localhost:9092 ...) and --check-config exits 0 without a word about .env.
    A file that cannot be read (not UTF-8) is a startup error naming .env; a directory
    should be said too (an error, or at least a warning)."""
    from actors.settings import Settings, SettingsError, env_file_warnings
    env = tmp_path / ".env"
    env.mkdir()
    try:
        Settings.from_env(environ={}, env_file=str(env))
    except SettingsError as exc:
        assert ".env" in str(exc)
        return
    assert env_file_warnings(str(env)), "a .env directory is silently ignored"


def test_a_sighup_whose_new_limits_file_does_not_fit_in_dev_shm_keeps_the_master_running(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """A SIGHUP that raises SSE_MAX_CLIENTS makes the master write a new limits file in the
    instance directory (web/serve.py on_reload -> create_shared_limits), allocated with
    posix_fallocate. The directory's room was checked only at the start (instance_room): in
    a container with docker's 64 MB /dev/shm, SSE_MAX_CLIENTS=1000000 needs a ~100 MB file
    and fallocate fails with ENOSPC. Nothing catches it in on_reload: gunicorn's main loop
    gets the exception ('Unhandled exception in main loop') and the master stops the whole
    instance, where a bad SIGHUP should be logged and the running settings kept."""
    import errno
    import os
    import sys
    from dataclasses import replace

    from actors import shared_limits
    monkeypatch.setitem(sys.modules, "actors.shared_limits", shared_limits)
    serve.gunicorn_config(replace(master.settings, sse_max_clients=1000))
    serve.on_starting(master.server)

    def full(fd, offset, length):              # /dev/shm without room for the new file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full)
    serve.gunicorn_config(replace(master.settings, sse_max_clients=1_000_000))
    serve.on_reload(master.server)             # must not raise: it would end the master


def test_a_sighup_that_changes_one_listener_and_keeps_the_other_is_refused_with_what_to_do(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """gunicorn binds every listener again when the list changes; the kept one is still held
    by the old workers, so the master retried five times and exited with the instance."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    monkeypatch.setenv("ADMIN_PORT", str(free_port()))
    config = serve.gunicorn_config()
    assert config["bind"] == serve.bind_addresses(master.settings)        # the running ones
    assert "restart the gateway to change HTTP_PORT, ADMIN_PORT" in caplog.text


def test_a_sighup_whose_limits_file_would_not_fit_is_refused_before_gunicorn_applies_it(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    import sys

    from actors import shared_limits
    monkeypatch.setitem(sys.modules, "actors.shared_limits", shared_limits)
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    monkeypatch.setattr(instance_dir, "free_bytes", lambda path: 1024 * 1024)
    monkeypatch.setenv("SSE_MAX_CLIENTS", "200000")
    config = serve.gunicorn_config()
    assert config["worker_connections"] == master.settings.sse_max_clients + 200   # kept
    assert "SSE_MAX_CLIENTS=200000 needs a limits file of" in caplog.text
    assert "--shm-size" in caplog.text


def test_sse_rate_limit_buckets_evicted_total_never_falls_across_a_sighup(
        master, monkeypatch):   # noqa: F811
    """README (Running in production): the instance's counters 'never fall'. The counter
    sse_rate_limit_buckets_evicted_total (/stats limiter.buckets_evicted) is read from the
    shared limits file's header (web/metrics.py _families, actors/replies.py
    combine_limiter_stats), not from the tally. A SIGHUP that changes SSE_MAX_CLIENTS makes
    the master write a fresh limits file (web/serve.py on_reload -> create_shared_limits):
    every new worker reported 0, a counter reset to Prometheus. The new file goes on from the
    old one's count."""
    import sys
    from dataclasses import replace

    from actors import shared_limits
    monkeypatch.setitem(sys.modules, "actors.shared_limits", shared_limits)
    before_settings = replace(master.settings, sse_max_clients=100)
    serve.gunicorn_config(before_settings)
    serve.on_starting(master.server)
    path = f"{serve.os.environ['SSE_INSTANCE_DIR']}/{shared_limits.LIMITS_FILE}"
    old = shared_limits.SharedLimits.attach(path, before_settings)
    try:
        for n in range(20_000):                 # more addresses than the 16,384 buckets
            old.admit(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", False)
        evicted_before = old.figures().buckets_evicted
    finally:
        old.close()
    assert evicted_before > 0
    raised = replace(before_settings, sse_max_clients=5000)
    serve.gunicorn_config(raised)
    serve.on_reload(master.server)              # SIGHUP: a new limits file for the new workers
    new = shared_limits.SharedLimits.attach(path, raised)
    try:
        evicted_after = new.figures().buckets_evicted
    finally:
        new.close()
    assert evicted_after >= evicted_before, (evicted_before, evicted_after)


def test_a_sighup_that_keeps_grpc_port_says_nothing_of_the_port_its_old_worker_holds(
        master, monkeypatch, tmp_path):   # noqa: F811
    """At on_reload the old worker still holds the management port: that is no other process."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    with _listening() as port:                  # the old worker's
        monkeypatch.setenv("GRPC_PORT", str(port))
        serve.gunicorn_config()
        serve.on_starting(master.server)
        master.server.logged.clear()
        serve.gunicorn_config()                 # SIGHUP, GRPC_PORT unchanged
        serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged]
    assert not any(f"GRPC_PORT={port}" in line for line in said), said


def _clear_text_password(monkeypatch) -> None:
    """Settings that send a SASL password in clear text to a broker off this host."""
    for name, value in (("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                        ("KAFKA_SASL_MECHANISM", "PLAIN"), ("KAFKA_SASL_USERNAME", "u"),
                        ("KAFKA_SASL_PASSWORD", "p4ssw0rd"),
                        ("KAFKA_BROKERS", "kafka.example:9092")):       # not loopback
        monkeypatch.setenv(name, value)


def _said_clear_text_warning(reloaded) -> None:
    """The master's SIGHUP said the warning, without the password."""
    said = [args[0] % args[1:] for args in reloaded.server.logged]
    assert any("SIGHUP: " in line and "clear text" in line for line in said), said
    assert not any("p4ssw0rd" in line for line in said)


def test_a_sighup_repeats_the_clear_text_password_warning_as_the_start_says_it(
        master, monkeypatch, tmp_path):   # noqa: F811
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    master.server.logged.clear()
    _clear_text_password(monkeypatch)
    serve.gunicorn_config()
    serve.on_reload(master.server)
    _said_clear_text_warning(master)


def test_a_sighup_that_moves_grpc_host_on_the_same_port_does_not_blame_another_process(
        master, monkeypatch, tmp_path):   # noqa: F811
    """The old worker holds 127.0.0.1:P (GRPC_HOST's default) at on_reload: GRPC_HOST=0.0.0.0
    with the same GRPC_PORT failed the probe against it, 'in use by another process' (a
    review of this change)."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    port = master.settings.grpc_port
    serve.on_starting(master.server)
    with socket.socket() as old_worker:
        old_worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        old_worker.bind(("127.0.0.1", port))
        old_worker.listen()
        master.server.logged.clear()
        monkeypatch.setenv("GRPC_HOST", "0.0.0.0")
        serve.gunicorn_config()                 # SIGHUP, GRPC_PORT unchanged
        serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged]
    assert not any("in use by another process" in line for line in said), said


def test_a_sighup_to_an_http_host_not_of_this_machine_says_so_not_restart(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """HTTP_HOST moved to an address this machine does not have, same HTTP_PORT: EADDRNOTAVAIL
    was told as 'port P is this gateway's own ... restart' (any error on a held port took
    that branch), and a restart fails the same way (a review of this change)."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    monkeypatch.setenv("HTTP_HOST", "192.0.2.1")      # TEST-NET-1: not on this machine
    serve.gunicorn_config()
    assert "kept the running settings" in caplog.text
    assert "address of this machine" in caplog.text, caplog.text


def test_a_refused_sighup_does_not_replace_the_workers(master, monkeypatch, tmp_path, caplog):  # noqa: F811
    """gunicorn's reload replaced every worker even when the settings read again were
    refused (and kept): each stream ended, every client came back at once, for a typo."""
    reloads = []
    master.server.handle_hup = lambda: reloads.append(1)
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=lots\n")
    master.server.handle_hup()
    assert reloads == []
    assert "kept the running settings and the workers" in caplog.text
    (tmp_path / ".env").write_text("SSE_MAX_CLIENTS=500\n")
    master.server.handle_hup()
    assert reloads == [1]


def test_an_accepted_sighup_names_the_variables_it_changed_never_a_value(
        master, monkeypatch, tmp_path):   # noqa: F811
    """gunicorn said `Handling signal: hup` and `Booting worker`, nothing of what was taken:
    an operator could not tell from the log that the new .env was read (a deploys audit)."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    serve.gunicorn_config()
    serve.gunicorn_config()          # the same settings again: nothing changed
    master.server.logged.clear()
    serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged]
    assert any(line == "SIGHUP: no setting changed; new workers replace the old ones"
               for line in said), said
    monkeypatch.setenv("SSE_HEARTBEAT_SECONDS", "7")
    monkeypatch.setenv("GRPC_AUTH_TOKEN", "a-brand-new-management-token")
    serve.gunicorn_config()
    master.server.logged.clear()
    serve.on_reload(master.server)
    said = [args[0] % args[1:] for args in master.server.logged]
    assert "SIGHUP: taking the new settings of GRPC_AUTH_TOKEN, SSE_HEARTBEAT_SECONDS" in said
    assert not any("a-brand-new" in line or "=7" in line for line in said)


def _started_with_code(started, monkeypatch, tmp_path, second: str):
    """The master (`started`) started with its code in a package of two modules, a.py and
    `second`: the package's folder."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("X = 1\n")
    (package / second).write_text("Y = 1\n")
    monkeypatch.setattr(serve, "_code_roots", lambda: [package])
    monkeypatch.chdir(tmp_path)
    _environ_of(started, monkeypatch)
    serve.on_starting(started.server)
    return package


def test_a_sighup_after_the_code_changed_on_disk_is_refused_and_keeps_the_workers(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """`pip install -U` (or a checkout) then SIGHUP: the new workers, forked from a master
    holding the old modules, imported new ones beside them (ImportError), failed to boot,
    and gunicorn halted the whole instance. Changed code is for a restart (or SIGUSR2)."""
    package = _started_with_code(master, monkeypatch, tmp_path, "b.py")
    reloads = []
    (package / "b.py").write_text("Y = 1\n")             # rewritten, the same: no change
    serve._hang_up(lambda: reloads.append(1))
    assert reloads == [1]
    (package / "a.py").write_text("X = 2\n")
    (package / "c.py").write_text("Z = 1\n")
    serve._hang_up(lambda: reloads.append(2))
    assert reloads == [1], "the reload would have stopped the instance"
    assert "code changed on disk since this instance started (2 files: pkg/a.py, pkg/c.py)" \
        in caplog.text and "restart the instance soon" in caplog.text
    (package / "c.py").unlink()
    (package / "c.py").symlink_to(package / "gone.py")      # removed mid-upgrade: unreadable
    serve._hang_up(lambda: reloads.append(3))              # said, not raised into gunicorn
    assert reloads == [1]


def test_a_sighup_after_an_upgrade_removed_a_module_is_refused_and_keeps_the_workers(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """An upgrade that drops a module (its code moved elsewhere) changed the code as much as
    one that edits it: the new workers, forked from a master holding the old modules, import
    the new ones beside them, fail to boot, and gunicorn halts the whole instance."""
    package = _started_with_code(master, monkeypatch, tmp_path, "gone.py")
    (package / "gone.py").unlink()
    reloads = []
    serve._hang_up(lambda: reloads.append(1))
    assert reloads == [], "the reload would have stopped the instance"
    assert "code changed on disk since this instance started (1 file: pkg/gone.py)" \
        in caplog.text


def test_a_sighup_with_an_unreadable_env_file_still_repeats_the_settings_warnings(
        master, monkeypatch, tmp_path):   # noqa: F811
    """A SIGHUP repeats the start's warnings (a password sent in clear); with a .env that
    became unreadable the running settings are kept, and their warnings are said all the
    same, not dropped with the .env's."""
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    _clear_text_password(monkeypatch)
    serve.gunicorn_config()
    serve.on_starting(master.server)
    master.server.logged.clear()
    (tmp_path / ".env").write_bytes("KAFKA_CLIENT_ID=caf\xe9\n".encode("latin-1"))
    serve.gunicorn_config()                      # the reload's config: kept, logged
    serve.on_reload(master.server)
    _said_clear_text_warning(master)


def test_a_sighup_that_turns_auth_on_gives_the_new_workers_the_shared_nonces_file(
        master, monkeypatch, tmp_path):   # noqa: F811
    """AUTH_MODE turned on by a SIGHUP: the master makes the 6 MiB table of used tickets
    before the new workers start, as a start with auth on does. Else the first new worker
    made it at its boot, in room nobody checked (ENOSPC: gunicorn halts the instance) and
    taken from the workers' metrics files."""
    import os
    from dataclasses import replace

    from actors.auth import shared_nonces
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    path = os.environ["SSE_INSTANCE_DIR"]
    assert shared_nonces.NONCES_FILE not in os.listdir(path)
    serve.gunicorn_config(replace(master.settings, auth_mode="required"))   # the reload's
    serve.on_reload(master.server)
    made = os.path.join(path, shared_nonces.NONCES_FILE)
    assert os.path.getsize(made) == shared_nonces.SIZE


def test_a_sighup_whose_new_settings_raise_anything_keeps_the_master_running(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    """ADMIN_HOST=<a zero-width space> in .env, then SIGHUP: the bind probe raised TypeError
    ('encoding of hostname failed'), which only SettingsError was caught around, and gunicorn's
    main loop ended the whole instance (exit 255). Now the host is refused as a setting, and
    whatever else reading the new settings raises keeps the running ones."""
    reloads = []
    master.server.handle_hup = lambda: reloads.append(1)
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)
    (tmp_path / ".env").write_text(f"ADMIN_HOST=\u200b\nADMIN_PORT={free_port()}\n")
    master.server.handle_hup()
    assert "ADMIN_HOST=" in caplog.text and "ASCII" in caplog.text, caplog.text

    def unforeseen(*_args, **_kwargs):
        raise TypeError("encoding of hostname failed")

    monkeypatch.setattr(serve, "listen_problems", unforeseen)
    (tmp_path / ".env").write_text(f"ADMIN_PORT={free_port()}\n")
    caplog.clear()
    master.server.handle_hup()                   # must not raise: it would end the master
    serve.gunicorn_config()                      # gunicorn's reload reads them this way
    assert reloads == []
    assert "TypeError: encoding of hostname failed" in caplog.text, caplog.text
    assert "kept the running settings" in caplog.text


def test_whatever_on_reload_meets_is_logged_not_raised_into_gunicorns_main_loop(
        master, monkeypatch, tmp_path, caplog):   # noqa: F811
    monkeypatch.chdir(tmp_path)
    _environ_of(master, monkeypatch)
    serve.on_starting(master.server)

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serve, "_renew_shared_files", full)
    serve.on_reload(master.server)              # must not raise: it would end the master
    assert "SIGHUP: after reading the settings again" in caplog.text
    assert "No space left on device" in caplog.text


@pytest.mark.parametrize("before", ["text", "json"])
def test_the_masters_own_module_lines_have_a_time_and_level_in_text_mode(capfd, before):
    """The master logs through gunicorn's logger and, in a few places (web/metrics_files.py:
    'the metrics of the ended worker ... stay'), through a module's logger. With LOG_FORMAT
    text nothing handled those: Python's last resort wrote the bare message, no time, no level,
    no pid. They must read as the workers' lines do (actors/logs.TEXT_FORMAT)."""
    import logging
    import re

    from web.gunicorn_log import RedactingLogger
    logging.getLogger().handlers[:] = []        # the master's before gunicorn's setup
    log = RedactingLogger(_gunicorn_cfg(before))
    log.setup(_gunicorn_cfg("text"))
    capfd.readouterr()
    logging.getLogger("web.metrics_files").warning("the metrics of the ended worker 4242 stay")
    lines = [line for line in capfd.readouterr().err.splitlines() if "4242" in line]
    assert len(lines) == 1, lines
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.* \[\d+\] WARNING +web\.metrics_files: the "
                    r"metrics", lines[0]), lines[0]


def test_a_sighup_to_another_log_level_reaches_the_masters_module_loggers():
    """In text mode the master's root logger took the level of the first setup only: a SIGHUP
    from LOG_LEVEL=INFO to WARNING left its module loggers at INFO (the review)."""
    import logging

    from web.gunicorn_log import RedactingLogger
    logging.getLogger().handlers[:] = []
    log = RedactingLogger(_gunicorn_cfg("text", "info"))
    assert logging.getLogger().level == logging.INFO
    log.setup(_gunicorn_cfg("text", "warning"))
    assert logging.getLogger().level == logging.WARNING
