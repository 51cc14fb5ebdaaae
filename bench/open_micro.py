"""What opening a stream costs in-process, without auth, with a ticket and with a bearer token.

    .venv/bin/python bench/open_micro.py [--batches 15] [--size 100] [--history 100]

One gevent-patched process runs the real actor system (no Kafka: the consumer is a quiet
stand-in; the broker is given --history events as a warm start), the real limiter with its
shared limits file in /dev/shm, and the real Authenticator (HS256, tickets). Each open is what
GET /events does after gunicorn has parsed the request (web/stream.open_events): credentials,
scope, admission, the client's actor, the subscription, the history's hand-over, the first
writes, then the close. The three kinds take turns in batches of --size opens, in an order
that rotates, and every credential is new (the verifier has never seen the token; the ticket
is unspent). Prints the median process CPU per open of each kind and the ratios (no auth /
kind): the share of an authenticated open's CPU that the edge and the actors add, apart from
gunicorn's part, which bench/run's auth run adds to all three alike.

    .venv/bin/python bench/open_micro.py --anonymous

adds a fourth kind: streams without a credential, the system in AUTH_MODE=optional (what turning
auth on costs a stream that has none; the ticket and bearer opens are checked as with required).

    .venv/bin/python bench/open_micro.py --parts

adds three kinds of ticket opens to the turns: one whose check is handed its result (the
ticket checked before the clock starts), one whose spend does nothing, one with both, and
prints what each part costs inside an open (the ticket open's CPU less the kind's) beside
what it costs timed alone, in a loop of its own.

    .venv/bin/python bench/open_micro.py --instructions [--count 200] [--seeds 3]

counts instructions instead of CPU time, under valgrind's callgrind: for each kind, one run
that opens --count streams and one that opens none (the same start, warm-up and credentials),
the difference divided by --count, with PYTHONHASHSEED fixed (0, 1, ... for --seeds N, the
mean taken): a count does not drift with what else the machine runs (CPU time on this VM
does, by 20 % between runs). One seed repeats within 0.5 % for the same code; the seed alone
moves a count by up to 10 %, and between checkouts a path neither changed moved 0.9 %.
About 2 minutes per seed, two valgrinds at a time.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import pykka  # noqa: E402

from actors import shared_limits, system as actor_system  # noqa: E402
from actors.events import Event, Position  # noqa: E402
from actors.gateway import Gateway  # noqa: E402
from actors.messages import Consumed  # noqa: E402
from actors.settings import Settings  # noqa: E402
from service.main import _tune_gc  # noqa: E402
from auth_runs import mint  # noqa: E402
from web.events_path import Headers, Query  # noqa: E402
from web.stream import open_events  # noqa: E402

KINDS = ("off", "ticket", "bearer")
ANONYMOUS = "anonymous"     # --anonymous: no credential, on a system with AUTH_MODE=optional
PARTS = ("checked", "unspent", "neither")   # ticket opens with parts handed over (--parts)
JWT_SECRET, TICKET_SECRET = "j" * 40, "t" * 40


class QuietConsumer(pykka.ThreadingActor):
    """Stands in for the Kafka consumer: nothing is read."""

    def __init__(self, **_kwargs):
        super().__init__()


def start(instance_dir: str, history: int, optional: bool = False):
    mode = {"AUTH_MODE": "optional", "AUTH_ANONYMOUS_SCOPE": "event_types=*;sources=*"
            } if optional else {}
    settings = Settings.from_env({
        "KAFKA_BROKERS": "127.0.0.1:9", "KAFKA_TOPICS": "t", "SSE_INSTANCE_DIR": instance_dir,
        "SSE_HISTORY_SIZE": str(history), "HTTP_MAX_PENDING_PER_IP": "100000",
        "SSE_MAX_CLIENTS": "10000", "SSE_MAX_CLIENTS_PER_IP": "10000",
        "RATE_LIMIT_ENABLED": "false", "AUTH_MODE": "required", "AUTH_JWT_ALGORITHMS": "HS256",
        "AUTH_JWT_SECRET": JWT_SECRET, "AUTH_TICKET_SECRET": TICKET_SECRET,
        "AUTH_TICKET_TTL_SECONDS": "300", **mode}, env_file=None)
    shared_limits.create(os.path.join(instance_dir, "limits"), settings)
    actor_system.KafkaConsumerActor = QuietConsumer
    system = actor_system.start(settings)
    with_auth = Gateway.of(system)
    without = Gateway(settings, broker=system.broker, history=system.history,
                      limiter=system.limiter, stopping=system.stopping, core=system.core)
    system.broker.tell(Consumed(tuple(_event(i) for i in range(history)),
                                frontier={("t", 0): history}, starts={("t", 0): 0}, warm=True))
    time.sleep(0.3)
    _tune_gc()          # as a gunicorn worker does (service/main.py)
    return settings, system, {"off": without, "ticket": with_auth, "bearer": with_auth,
                              ANONYMOUS: with_auth}


def _instance_dir():
    return tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def _event(i: int) -> Event:
    data = (b'data: {"id":"e%d","type":"order.created","source":"shop","timestamp":'
            b'"2026-12-02T12:00:00.000Z","data":{"i":%d}}\n' % (i, i))
    sse_id = f"id{i}".encode()
    return Event(Position("t", 0, i), "order.created", "shop", 0, sse_id.decode(),
                 b"id: " + sse_id + b"\nevent: order.created\n" + data + b"\n",
                 b"id: " + sse_id + b"\n" + data + b"\n")


def credentials(kind: str, gateway, count: int) -> list:
    if kind in ("off", ANONYMOUS):
        return [None] * count
    tokens = [mint(JWT_SECRET, f"user-{secrets.token_hex(6)}") for _ in range(count)]
    if kind == "bearer":
        return tokens
    auth = gateway.auth
    return [auth.issue_ticket(auth.identify(bearer=token))[0] for token in tokens]


def open_one(settings, gateway, kind: str, credential, history: int) -> None:
    query = f"ticket={credential}" if kind == "ticket" else ""
    environ = {"REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": "open_micro", "QUERY_STRING": query}
    if kind == "bearer":
        environ["HTTP_AUTHORIZATION"] = f"Bearer {credential}"
    body = open_events(settings, gateway, None, environ, Query(query), Headers(environ),
                       lambda _name: None, "127.0.0.1")
    frames = iter(body)
    next(frames)                        # retry and greeting
    shown = 0
    while shown < history:              # the history's hand-over
        shown += next(frames).count(b"id: ")
    body.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--parts", action="store_true",
                   help="also time ticket opens without their check, spend or both")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per open under callgrind (needs valgrind)")
    p.add_argument("--count", type=int, default=200, help="opens per kind with --instructions")
    p.add_argument("--seeds", type=int, default=1, help="hash seeds to average (--instructions)")
    p.add_argument("--anonymous", action="store_true",
                   help="also open streams without a credential, the system in AUTH_MODE="
                        "optional (tickets and tokens are checked as with required)")
    p.add_argument("--child", nargs=2, metavar=("KIND", "OPENS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    a.kinds = KINDS + ((ANONYMOUS,) if a.anonymous else ())
    logging.basicConfig(level=logging.WARNING)
    if a.child:
        return child(a.child[0], int(a.child[1]), a.count, a.history, a.anonymous)
    if a.instructions:
        return count_instructions(a)
    with _instance_dir() as d:
        settings, system, gateways = start(d, a.history, a.anonymous)
        try:
            found = measure(settings, gateways, a)
        finally:
            actor_system.stop(system, timeout=5)
    median = {kind: statistics.median(values) for kind, values in found.items()}
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{a.batches} batches of {a.size} opens each, history {a.history}; load average "
          f"{os.getloadavg()[0]:.2f}. Median process CPU per open:")
    for kind in a.kinds:
        print(f"  {kind:9} {median[kind]:7.0f} us   no auth / {kind}: "
              f"{median['off'] / median[kind]:.2f}")
    if a.parts:
        print(f"Inside a ticket open (the ticket open's CPU less that of the kind without "
              f"the part), against the part timed alone:\n"
              f"  check   {median['ticket'] - median['checked']:5.1f} us  alone "
              f"{found['check alone'][0]:5.1f} us\n"
              f"  spend   {median['ticket'] - median['unspent']:5.1f} us  alone "
              f"{found['spend alone'][0]:5.1f} us\n"
              f"  both    {median['ticket'] - median['neither']:5.1f} us")


def measure(settings, gateways, a) -> dict[str, list[float]]:
    kinds = a.kinds + (PARTS if a.parts else ())
    for kind in a.kinds:                # warm: imports, caches, the limits file's pages
        for credential in credentials(kind, gateways[kind], 50):
            open_one(settings, gateways[kind], kind, credential, a.history)
    found: dict[str, list[float]] = {kind: [] for kind in kinds}
    for batch in range(a.batches):
        turn = batch % len(kinds)
        for kind in kinds[turn:] + kinds[:turn]:
            gateway = gateways["ticket" if kind in PARTS else kind]
            given = credentials("ticket" if kind in PARTS else kind, gateway, a.size)
            with _handed_over(gateway.auth, kind, given):
                started = time.process_time()
                for credential in given:
                    open_one(settings, gateway, "ticket" if kind in PARTS else kind,
                             credential, a.history)
                found[kind].append(1e6 * (time.process_time() - started) / a.size)
    if a.parts:
        found.update(_alone(gateways["ticket"].auth, a.size * 10))
    return found


@contextlib.contextmanager
def _handed_over(auth, kind: str, tickets: list):
    """For the PARTS kinds: the tickets' checks done before the clock starts ("checked"),
    the spend a no-op ("unspent"), or both ("neither")."""
    if kind not in PARTS:
        yield
        return
    check, redeem = auth.check_ticket, auth.redeem
    if kind in ("checked", "neither"):
        auth.check_ticket = {ticket: check(ticket) for ticket in tickets}.__getitem__
    if kind in ("unspent", "neither"):
        auth.redeem = lambda checked: checked.identity
    try:
        yield
    finally:
        auth.check_ticket, auth.redeem = check, redeem


def _alone(auth, count: int) -> dict[str, list[float]]:
    """Checking and spending `count` tickets in loops of their own: us per ticket."""
    tickets = [auth.issue_ticket(auth.identify(bearer=mint(JWT_SECRET, f"a-{n}")))[0]
               for n in range(count)]
    started = time.process_time()
    checked = [auth.check_ticket(ticket) for ticket in tickets]
    middle = time.process_time()
    for one in checked:
        auth.redeem(one)
    ended = time.process_time()
    return {"check alone": [1e6 * (middle - started) / count],
            "spend alone": [1e6 * (ended - middle) / count]}


def child(kind: str, opens: int, made: int, history: int, optional: bool) -> None:
    """One callgrind run: start, 30 opens to warm up, `made` credentials, `opens` opens."""
    with _instance_dir() as d:
        settings, system, gateways = start(d, history, optional)
        try:
            for credential in credentials(kind, gateways[kind], 30):
                open_one(settings, gateways[kind], kind, credential, history)
            given = credentials(kind, gateways[kind], made)
            for credential in given[:opens]:
                open_one(settings, gateways[kind], kind, credential, history)
        finally:
            actor_system.stop(system, timeout=5)


def count_instructions(a) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    runs = [(kind, opens, seed) for seed in range(a.seeds) for kind in a.kinds
            for opens in (0, a.count)]

    def run(kind: str, opens: int, seed: int) -> int:
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             __file__, "--child", kind, str(opens), "--count", str(a.count),
             "--history", str(a.history), *(["--anonymous"] if a.anonymous else [])],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONHASHSEED": str(seed)})
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            sys.exit(f"callgrind run {kind} x {opens} failed: {done.stderr[-500:]}")
        return int(found.group(1))

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(runs, pool.map(lambda r: run(*r), runs), strict=True))
    per_open = {kind: statistics.mean((counts[kind, a.count, seed] - counts[kind, 0, seed])
                                      / a.count for seed in range(a.seeds)) for kind in a.kinds}
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"callgrind, {a.count} opens per kind, history {a.history}, PYTHONHASHSEED 0-"
          f"{a.seeds - 1}. Instructions per open:")
    for kind in a.kinds:
        print(f"  {kind:9} {per_open[kind] / 1000:7.0f}k  no auth / {kind}: "
              f"{per_open['off'] / per_open[kind]:.2f}")


if __name__ == "__main__":
    main()
