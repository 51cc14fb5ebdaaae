"""What one credential check costs in-process, the numbers behind the README's auth costs.

    .venv/bin/python bench/auth_micro.py [--tokens 2000] [--repeats 5] [--history 100]

Prints the median over the repeats, in µs per credential: a new HS256 token (never seen by
the verifier: minted anew for every repeat), a new token when the verifier's cache of
verified tokens is full, the same tokens again (remembered), issuing a
ticket, and redeeming one (single use across the instance: one file in a /dev/shm folder);
beside them, PyJWT's own `jwt.decode` of new tokens, for a ratio measured in the same run
(this machine's speed drifts by half from one minute to the next). Last, what a new stream of
a subject costs the history (its replay of a ring of `--history` public events). No Kafka, no
gunicorn: the Authenticator the gateway builds from the same settings.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from actors.auth.authenticator import Authenticator  # noqa: E402
from actors.events import Event, Position  # noqa: E402
from actors.filters import Filter  # noqa: E402
from actors.history import HistoryActor  # noqa: E402
from actors.settings import Settings  # noqa: E402
from auth_runs import mint  # noqa: E402

SECRET = "j" * 40


def per_item(action, items) -> float:
    started = time.perf_counter()
    for item in items:
        action(item)
    return (time.perf_counter() - started) / len(items) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--history", type=int, default=100, help="events in the history's ring")
    a = p.parse_args()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as instance_dir:     # the used tickets' files
        found = measure(a.tokens, a.repeats, instance_dir)
    found[f"history of {a.history}"] = history_replays(a.tokens, a.repeats, a.history)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{a.tokens} credentials x {a.repeats} repeats (median us each):")
    for name, values in found.items():
        print(f"  {name:18} {statistics.median(values):6.1f}   "
              f"(all: {', '.join(f'{v:.1f}' for v in values)})")
    ratios = [ours / stock for ours, stock in zip(found["new token"], found["PyJWT jwt.decode"],
                                                      strict=True)]
    print(f"  new token / PyJWT jwt.decode, same repeat: median {statistics.median(ratios):.2f}")


def measure(count: int, repeats: int, instance_dir: str) -> dict[str, list[float]]:
    settings = Settings.from_env({
        "KAFKA_BROKERS": "127.0.0.1:9", "KAFKA_TOPICS": "t", "AUTH_MODE": "required",
        "AUTH_JWT_ALGORITHMS": "HS256", "AUTH_JWT_SECRET": SECRET,
        "AUTH_TICKET_SECRET": "t" * 40, "SSE_INSTANCE_DIR": instance_dir},
        env_file=None)
    auth = Authenticator.from_settings(settings)
    names = [f"user-{i:05d}" for i in range(count)]
    found: dict[str, list[float]] = {"new token": [], "new token, full": [],
                                     "token seen before": [],
                                     "issue a ticket": [], "redeem a ticket": [],
                                     "PyJWT jwt.decode": []}
    for _ in range(repeats):
        found["PyJWT jwt.decode"].append(per_item(
            lambda t: jwt.decode(t, SECRET, algorithms=["HS256"], options={"require": ["exp"]}),
            [mint(SECRET, name) for name in names]))
        tokens = [mint(SECRET, name) for name in names]
        found["new token"].append(per_item(lambda t: auth.identify(bearer=t), tokens))
        found["token seen before"].append(per_item(lambda t: auth.identify(bearer=t), tokens))
        found["new token, full"].append(new_tokens_when_full(auth, names))
        identities = [auth.identify(bearer=t) for t in tokens]
        found["issue a ticket"].append(per_item(auth.issue_ticket, identities))
        tickets = [auth.issue_ticket(identity)[0] for identity in identities]
        found["redeem a ticket"].append(per_item(lambda t: auth.identify(ticket=t), tickets))
    return found


def new_tokens_when_full(auth: Authenticator, names: list[str]) -> float:
    """A new token when the verified-token cache is full (a busy gateway's usual state): µs."""
    cache = auth.verifier.verified
    for i in range(cache.capacity):     # fill it, then empty its front as evictions do
        cache.put(f"filler-{i}", None, 0)     # type: ignore[arg-type]
    for i in range(cache.capacity):
        cache.put(f"filler-{cache.capacity + i}", None, 0)     # type: ignore[arg-type]
    tokens = [mint(SECRET, name) for name in names]
    return per_item(lambda t: auth.identify(bearer=t), tokens)


def history_replays(count: int, repeats: int, size: int) -> list[float]:
    """A new stream of each of `count` subjects (none owning an event of the ring) asks the
    history what it replays: µs per stream."""
    history = HistoryActor(size=size)
    history.remember([Event(Position("t", 0, i), "order.created", "shop", 0, str(i), b"", b"")
                      for i in range(size)], {("t", 0): 0})
    everything = Filter()
    names = [f"user-{i:05d}" for i in range(count)]
    timings = []
    for _ in range(repeats):
        history.remember([])            # a new batch: what was kept is forgotten
        timings.append(per_item(lambda name: history.replay(everything, name, None), names))
    return timings


if __name__ == "__main__":
    main()
