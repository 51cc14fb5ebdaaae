"""A peer's reply that is not what the codec wrote (another version, a bug, a corrupt frame):
read as a silent worker (UNAVAILABLE, saying why), never taken as a wrong answer or turned
into an exception in the worker that asked. Fuzzed from every reply the codec writes."""
import json
import os
import random

import pytest

from actors.gateway import Unavailable
from actors.instance import InstanceGateway
from actors.replies import ClientPage, LimiterStats
from rpc import mapper, peer_codec
from rpc.peers import PeerAnswer, read_answer
from tests.fakes import make_client, make_health
from tests.unit.rpc_fakes import SubjectGateway
from web.metrics import render

CASES = 3000
JUNK = (None, True, False, 0, -1, 1.5, -1e11, 1e308, "x", "", [], [1], {}, {"a": 1}, 2 ** 70,
        "7")
ARGS = {"stats": (), "health": (), "clients": (10, 0), "disconnect": ("c1", "bye"),
        "disconnect_subject": ("alice", "bye")}


def local():
    return SubjectGateway(clients=[make_client(n) for n in range(3)], connected={"c1"},
                          limiter=LimiterStats(True, refused={"rate_limited": 1}))


SAMPLES = {"stats": local().figures, "health": make_health(),
           "clients": ClientPage(2, (make_client(7), make_client(8))),
           "disconnect": False, "disconnect_subject": 2}


def mutate(rng, value):
    if rng.random() < 0.15 or not isinstance(value, (dict, list)):
        return rng.choice(JUNK) if rng.random() < 0.8 else value
    if isinstance(value, dict):
        changed = dict(value)
        if changed and rng.random() < 0.2:
            del changed[rng.choice(list(changed))]
        if changed:
            key = rng.choice(list(changed))
            changed[key] = mutate(rng, changed[key])
        return changed
    changed = list(value)
    if changed:
        index = rng.randrange(len(changed))
        changed[index] = mutate(rng, changed[index])
    return changed


class OnePeer:
    def __init__(self, answer):
        self.answer = answer

    def ask(self, method, *args, timeout):
        return lambda: [self.answer]


def received(method: str, body: bytes) -> PeerAnswer:
    """What Peers makes of a reply body."""
    return read_answer("worker 2", method, body)


def shown(method: str, value) -> None:
    """Everything an answer goes through on its way to the operator."""
    if method == "stats":
        json.dumps(value.to_json())
        mapper.stats(value)
        render(value)
    elif method == "health":
        json.dumps(value.to_json())
        mapper.health(value)
        value.not_ready()
    elif method == "clients":
        json.dumps(value.to_json())
        mapper.clients(value, 10, 0)


def test_fuzzed_replies_are_answered_or_unavailable_never_an_exception():
    rng = random.Random(20261201)
    failures = []
    for _ in range(CASES):
        method = rng.choice(sorted(SAMPLES))
        body = json.dumps(mutate(rng, json.loads(peer_codec.encode(SAMPLES[method])))).encode()
        try:
            shown(method, getattr(InstanceGateway(local(), OnePeer(received(method, body))),
                                  method)(*ARGS[method]))
        except Unavailable:
            pass
        except Exception as exc:  # noqa: BLE001 - collected and shown below
            failures.append((method, type(exc).__name__, str(exc)[:80], body[:160]))
    assert not failures, f"{len(failures)} of {CASES}: {failures[:5]}"


@pytest.mark.parametrize("method, body", [
    ("disconnect", b'"no"'),                  # a non-empty string is not "disconnected"
    ("disconnect", b"1"),
    ("disconnect_subject", b"2.9"),
    ("disconnect_subject", b"true"),
    ("disconnect_subject", b'"7"'),
    ("clients", b'{"total": -1, "clients": []}'),
    ("stats", json.dumps({**json.loads(peer_codec.encode(SAMPLES["stats"])),
                          "history_size": True}).encode()),
])
def test_a_reply_of_the_wrong_type_is_not_read_as_an_answer(method, body):
    with pytest.raises((ValueError, KeyError, TypeError)):
        peer_codec.decode(method, body)


def test_a_page_of_a_worker_that_orders_clients_otherwise_is_a_silent_peer():
    """A worker of a version before GetClients ordered by `opened` (a replacement started
    after new code was installed) sent entries without it: read as 0, they sorted first on
    every page, and it paged by Unix time: a page_token walk listed its first clients
    forever (the review). Its page is not read: the instance's page is UNAVAILABLE."""
    entry = json.loads(peer_codec.encode(ClientPage(1, (make_client(1),))))["clients"][0]
    del entry["opened"]
    answer = read_answer("worker 7", "clients",
                         json.dumps({"total": 1, "clients": [entry]}).encode())
    assert answer.silent and "earlier version" in answer.silent


def test_an_uptime_made_negative_by_a_clock_set_back_is_still_read():
    from dataclasses import replace
    figures = SAMPLES["stats"]
    figures = replace(figures, broker=replace(figures.broker, uptime_seconds=-3.5))
    assert peer_codec.decode("stats", peer_codec.encode(figures)) == figures


def test_a_deep_client_page_is_encoded_without_asdicts_deep_copies(monkeypatch):
    """A GetClients page at offset N makes every other worker send its first N clients: with
    dataclasses.asdict, 10,000 of them held that worker's hub (every stream) ~0.5 s, the
    field-by-field encoding ~0.12 s (measured; a timing here would be a flaky test)."""
    import dataclasses
    page = ClientPage(10_000, tuple(make_client(n) for n in range(10_000)))
    old = json.dumps(dataclasses.asdict(page), separators=(",", ":")).encode()

    def no_deep_copy(_value):
        raise AssertionError("a client page went through dataclasses.asdict")
    monkeypatch.setattr(dataclasses, "asdict", no_deep_copy)
    new = peer_codec.encode(page)
    assert new == old                                   # the same bytes: old workers read it
    assert peer_codec.decode("clients", new) == page


@pytest.mark.parametrize("method", ["stats", "health", "clients"])
def test_a_reply_nested_too_deep_to_decode_is_a_silent_peer(method):
    """json's RecursionError escaped the reply handler (it caught ValueError, KeyError and
    TypeError): the whole answer failed instead of one peer being silent."""
    answer = received(method, b"[" * 100_000)
    assert answer.silent.startswith("unreadable reply")


def test_a_dead_workers_socket_is_forgotten_in_one_line_whoever_notices(tmp_path, caplog):
    """Two questions in flight when a worker died each noticed it: 'worker N is gone:
    forgetting ...' was logged twice per dead worker (a fault audit)."""
    import logging
    import socket
    from rpc import peers
    path = str(tmp_path / f"4242{peers.SUFFIX}")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()                        # the file stays, nobody listens: as after SIGKILL
    with caplog.at_level(logging.INFO, logger="rpc.peers"):
        peers._forget_dead(path)
        peers._forget_dead(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"worker 4242 is gone: forgetting {path}"]
    assert not os.path.exists(path)
