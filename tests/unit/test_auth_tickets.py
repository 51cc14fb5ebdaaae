"""Stream tickets: issued from an identity, redeemed once per instance, only while fresh."""
import base64
import hashlib
import hmac
import json
import os
import random
import re
import struct
import tempfile

import pytest

from actors.auth.identity import Identity, InvalidToken
from actors.auth.shared_nonces import Full
from actors.auth.tickets import (MAX_URL_TICKET_CHARS, InvalidTicket, Redeemer, SharedNonces,
                                 TicketTooLarge, instance_secret, issue)

SECRET = b"t" * 32
ALICE = Identity("alice", ("order.*",), ("*",), expires_at=10_000.0)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def refused(redeemer: Redeemer, ticket: str) -> str:
    with pytest.raises(InvalidTicket) as caught:
        redeemer.redeem(ticket)
    if ticket:
        assert ticket not in str(caught.value)
    return caught.value.reason


def test_a_fresh_ticket_redeems_to_the_identity_it_was_issued_for():
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", ticket)      # URL-safe as it is
    assert Redeemer(SECRET, Clock()).redeem(ticket) == ALICE


# 60 event types of an explicit scope (no wildcard): its plain ticket was 5,412 characters,
# past the 4,094 of a request line, so GET /events?ticket= was 414 every time (an auth audit)
TYPES = tuple(f"orders.region-{r}.customer-segment-{s}.item.created.v{v}"
              for r in ("eu-west", "us-east", "ap-south") for s in ("premium", "standard")
              for v in range(10))


def test_a_ticket_of_a_long_scope_is_deflated_to_fit_in_a_url_and_redeems_the_same():
    wide = Identity("alice", TYPES, ("*",), expires_at=10_000.0)
    ticket = issue(wide, SECRET, ttl_s=30, now=1000.0)
    assert ticket.startswith("z") and len(ticket) <= MAX_URL_TICKET_CHARS
    assert Redeemer(SECRET, Clock()).redeem(ticket) == wide
    assert not issue(ALICE, SECRET, ttl_s=30, now=1000.0).startswith("z")    # short: as it was


def test_no_ticket_is_issued_that_no_url_could_carry():
    random_scope = Identity("alice", tuple(os.urandom(33).hex() for _ in range(100)), ("*",),
                            expires_at=10_000.0)
    with pytest.raises(TicketTooLarge, match="send the token as Authorization: Bearer"):
        issue(random_scope, SECRET, ttl_s=30, now=1000.0)


def test_every_ticket_issued_near_the_limit_fits_in_a_request_line_with_its_mac():
    """Scopes growing a character at a time across the limit: each is either refused with
    TicketTooLarge or gives a ticket that fits `GET /events?ticket=...` (counting its MAC
    too, a dot and 32 characters, else a ticket was issued that could only ever get a 414)."""
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_."
    types = tuple("".join(rng.choice(alphabet) for _ in range(40)) for _ in range(100))
    tail = "".join(rng.choice(alphabet) for _ in range(120))
    issued, refused_sizes = [], 0
    for length in range(len(tail) + 1):
        wide = Identity("alice", (*types, tail[:length]), ("*",), expires_at=10_000.0)
        try:
            ticket = issue(wide, SECRET, ttl_s=30, now=1000.0)
        except TicketTooLarge:
            refused_sizes += 1
            continue
        assert len(f"GET /events?ticket={ticket} HTTP/1.1") <= 4094, len(ticket)
        issued.append(len(ticket))
    assert refused_sizes and max(issued) > MAX_URL_TICKET_CHARS - 20     # up to the limit


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mac2(body: str, secret: bytes = SECRET) -> str:
    """A ticket's MAC as this version issues it: keyed BLAKE2b, 24 bytes."""
    return b64(hashlib.blake2b(body.encode(), key=secret, digest_size=24,
                               person=b"sse-ticket").digest())


def mac1(body: str, secret: bytes = SECRET) -> str:
    """A ticket's MAC as versions before 2026-12-06 issued it: HMAC-SHA256."""
    return b64(hmac.new(secret, b"sse-ticket." + body.encode(), hashlib.sha256).digest())


def signed(payload, mac=mac2) -> str:
    body = b64(json.dumps(payload).encode())
    return f"{body}.{mac(body)}"


def test_a_signed_deflated_payload_that_does_not_inflate_is_malformed():
    body = "z" + b64(b"not deflate data")
    assert refused(Redeemer(SECRET, Clock()), f"{body}.{mac2(body)}") == "malformed ticket"


def test_a_ticket_is_usable_once_per_instance_and_once_on_every_other_instance():
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    first, second = Redeemer(SECRET, Clock()), Redeemer(SECRET, Clock())
    assert first.redeem(ticket).subject == "alice"
    assert refused(first, ticket) == "ticket already used"
    assert second.redeem(ticket).subject == "alice"
    assert refused(second, ticket) == "ticket already used"


def test_every_ticket_is_different():
    assert issue(ALICE, SECRET, 30, 1000.0) != issue(ALICE, SECRET, 30, 1000.0)


def test_a_ticket_expires_after_its_ttl():
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    clock = Clock(1029.9)
    assert Redeemer(SECRET, clock).redeem(ticket).subject == "alice"
    clock.now = 1030.0
    assert refused(Redeemer(SECRET, clock), ticket) == "ticket expired"


def test_a_ticket_never_outlives_its_token():
    soon = Identity("alice", ("*",), ("*",), expires_at=1010.0)
    ticket = issue(soon, SECRET, ttl_s=30, now=1000.0)
    assert Redeemer(SECRET, Clock(1009.0)).redeem(ticket).expires_at == 1010.0
    assert refused(Redeemer(SECRET, Clock(1010.0)), ticket) == "ticket expired"


def test_a_ticket_outlives_its_token_by_no_more_than_the_leeway_it_was_accepted_with():
    """A token expiring at 1010 accepted with a 10 s leeway buys a ticket that is refused from
    1020 on, whatever its own 30 s lifetime: not a stream opened on a token expired longer."""
    soon = Identity("alice", ("*",), ("*",), expires_at=1010.0)
    ticket = issue(soon, SECRET, ttl_s=30, now=1005.0, leeway_s=10)
    assert Redeemer(SECRET, Clock(1019.9)).redeem(ticket) == soon
    assert refused(Redeemer(SECRET, Clock(1020.0)), ticket) == "ticket expired"
    assert refused(Redeemer(SECRET, Clock(1025.0)), ticket) == "ticket expired"


@pytest.mark.parametrize("shared", [False, True])
def test_a_ticket_stays_spent_until_its_very_end(tmp_path, shared):
    """Redeemed at once, the ticket opens no second stream half a second before it expires:
    its nonce is remembered as long as the ticket could be redeemed."""
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    clock = Clock(1000.0)
    used = SharedNonces(str(tmp_path / "tickets")) if shared else None
    redeemer = Redeemer(SECRET, clock, used=used)
    assert redeemer.redeem(ticket) == ALICE
    for clock.now in (1029.0, 1029.5, 1029.99):
        assert refused(redeemer, ticket) == "ticket already used", clock.now
    clock.now = 1030.0
    assert refused(redeemer, ticket) == "ticket expired"


@pytest.mark.parametrize("subject", [" alice", "alice ", "Alice", "ALICE", "a\tb",
                                     "\u00e9l\u00e8ve", "\u540d\u524d", "x" * 1024,
                                     "alice\u200b"])
def test_a_ticket_opens_as_exactly_the_subject_it_was_issued_for(subject):
    """Subjects are compared exactly: the ticket of " alice" or "Alice" (another user of the
    issuer) must open as that subject, not as alice, whose events it would then read."""
    identity = Identity(subject, ("order.*",), ("*",), expires_at=10_000.0)
    opened = Redeemer(SECRET, Clock()).redeem(issue(identity, SECRET, ttl_s=30, now=1000.0))
    assert opened == identity and opened.subject == subject


def test_a_ticket_whose_mac_has_its_letters_case_swapped_is_refused():
    """The MAC is base64url, where case matters: a ticket with its MAC's letters in the other
    case is a forgery, refused (and spends nothing of the real one)."""
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    body, mac = ticket.split(".")
    redeemer = Redeemer(SECRET, Clock())
    for forged in (mac.swapcase(), mac.lower(), mac.upper()):
        if forged != mac:
            assert refused(redeemer, f"{body}.{forged}") == "bad ticket signature"
    assert redeemer.redeem(ticket) == ALICE


def test_a_ticket_from_another_secret_is_refused():
    ticket = issue(ALICE, b"o" * 32, ttl_s=30, now=1000.0)
    assert refused(Redeemer(SECRET, Clock()), ticket) == "bad ticket signature"


def test_a_tampered_ticket_is_refused():
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    body, mac = ticket.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload[1] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    redeemer = Redeemer(SECRET, Clock())
    assert refused(redeemer, f"{forged}.{mac}") == "bad ticket signature"
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    assert refused(redeemer, f"{body}.{flipped}") == "bad ticket signature"
    assert redeemer.redeem(ticket).subject == "alice"       # the refusals used nothing up


@pytest.mark.parametrize("garbage", [
    "", "abc", "a.b.c", "é.é", "YQ." + "a" * 9000, "..", "YQ.!!", "YQ.", None])
def test_garbage_is_refused_as_malformed(garbage):
    assert refused(Redeemer(SECRET, Clock()), garbage) == "malformed ticket"


@pytest.mark.parametrize("mac", ["YQ", "A" * 31, "A" * 33, "A" * 42, "A" * 44, "A" * 32 + "=="])
def test_a_mac_of_no_tickets_length_is_malformed(mac):
    assert refused(Redeemer(SECRET, Clock()), f"YQ.{mac}") == "malformed ticket"


@pytest.mark.parametrize("mac", ["A" * 32, "A" * 43, "!" * 32, "+" * 43])
def test_a_ticket_with_a_made_up_mac_is_refused(mac):
    assert refused(Redeemer(SECRET, Clock()), f"YQ.{mac}") == "bad ticket signature"


def test_a_ticket_of_an_older_release_is_taken_once():
    """Versions before 2026-12-06 issue tickets of version 1 (HMAC-SHA256): in a rolling
    deploy this one takes them, by the same rules."""
    old = signed([1, "alice", ["order.*"], ["*"], 10_000.0, 1030.0, "n1"], mac=mac1)
    redeemer = Redeemer(SECRET, Clock())
    assert redeemer.redeem(old) == ALICE
    assert refused(redeemer, old) == "ticket already used"
    assert refused(Redeemer(b"o" * 32, Clock()), old) == "bad ticket signature"
    assert refused(Redeemer(SECRET, Clock(1030.0)), old) == "ticket expired"


def test_a_ticket_is_signed_with_this_versions_mac():
    """Issued: version 2, its MAC the keyed BLAKE2b (computed here with hashlib's own)."""
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    body, mac = ticket.split(".")
    assert mac == mac2(body) and len(mac) == 32
    assert json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))[0] == 2


def test_a_mac_is_taken_only_as_it_was_issued():
    """base64 has other spellings of the same bytes (`+/` for `-_`, padding): they are not
    the ticket's MAC, so a second string never opens the same ticket's stream."""
    for _ in range(200):
        ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
        if "-" in ticket.split(".")[1] or "_" in ticket.split(".")[1]:
            break
    body, mac = ticket.split(".")
    respelled = mac.replace("-", "+").replace("_", "/")
    assert refused(Redeemer(SECRET, Clock()), f"{body}.{respelled}") == "bad ticket signature"


def test_a_secret_longer_than_blake2bs_key_is_used_whole():
    """BLAKE2b takes a key of up to 64 bytes: a longer secret is hashed, not cut short, so a
    secret that shares its first 64 bytes is another secret."""
    long_secret = b"s" * 64 + b"tail"
    ticket = issue(ALICE, long_secret, ttl_s=30, now=1000.0)
    assert Redeemer(long_secret, Clock()).redeem(ticket) == ALICE
    assert refused(Redeemer(b"s" * 64, Clock()), ticket) == "bad ticket signature"
    assert refused(Redeemer(b"s" * 64 + b"other", Clock()), ticket) == "bad ticket signature"


@pytest.mark.parametrize("mac", [mac2, mac1])
@pytest.mark.parametrize("payload", [
    [3, "alice", ["*"], ["*"], 9999, 9999, "n"],          # another version
    [2, "alice", ["*"], ["*"], 9999, 9999],               # a field short
    [2, "alice", ["*"], ["*"], 9999, float("nan"), "n"],  # an expiry that never comes
    {"sub": "alice"}, "text", [2, "alice", 5, ["*"], 9999, 9999, "n"]])
def test_a_correctly_signed_payload_of_the_wrong_shape_is_refused(payload, mac):
    if mac is mac1 and isinstance(payload, list):
        payload = [1 if payload[0] == 2 else payload[0], *payload[1:]]
    assert refused(Redeemer(SECRET, Clock()), signed(payload, mac)) == "malformed ticket"


@pytest.mark.parametrize("version, mac", [(1, mac2), (2, mac1)])
def test_a_payload_signed_with_the_other_versions_mac_is_refused(version, mac):
    payload = [version, "alice", ["*"], ["*"], 9999, 9999, "n"]
    assert refused(Redeemer(SECRET, Clock()), signed(payload, mac)) == "malformed ticket"


@pytest.mark.parametrize("text", ['[2,"alice",["*"],["*"],9999,9999,"n"][]',
                                  '[2,"alice",["*"],["*"],9999,9999,"n"]x', ""])
def test_a_correctly_signed_payload_that_is_not_one_json_value_is_refused(text):
    body = b64(text.encode())
    assert refused(Redeemer(SECRET, Clock()), f"{body}.{mac2(body)}") == "malformed ticket"


def test_a_ticket_refusal_is_an_invalid_token_for_the_caller():
    with pytest.raises(InvalidToken):
        Redeemer(SECRET, Clock()).redeem("nope")


def test_used_nonces_are_forgotten_once_their_tickets_expire():
    clock = Clock(1000.0)
    redeemer = Redeemer(SECRET, clock)
    for _ in range(50):
        redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now))
    assert redeemer.remembered() == 50
    clock.now = 1031.0
    redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now))
    assert redeemer.remembered() == 1


def test_memory_is_bounded_by_refusing_rather_than_forgetting():
    clock = Clock(1000.0)
    redeemer = Redeemer(SECRET, clock, max_remembered=3)
    for _ in range(3):
        redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now))
    assert refused(redeemer, issue(ALICE, SECRET, ttl_s=30, now=clock.now)).startswith(
        "too many tickets in flight")
    assert redeemer.remembered() == 3
    clock.now = 1030.0
    assert redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now)).subject == "alice"


def test_a_short_secret_or_a_lifetime_of_zero_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue(ALICE, b"short", ttl_s=30, now=1000.0)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Redeemer(b"short", Clock())
    with pytest.raises(ValueError, match="more than zero"):
        issue(ALICE, SECRET, ttl_s=0, now=1000.0)


# -- the workers of one instance share what was redeemed --------------------------------------
def test_workers_of_one_instance_redeem_a_ticket_once_between_them(tmp_path):
    """Issue 14: with WORKERS=2 each worker kept its own used nonces: one ticket, two streams."""
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    first = Redeemer(SECRET, Clock(), used=SharedNonces(str(tmp_path / "tickets")))
    second = Redeemer(SECRET, Clock(), used=SharedNonces(str(tmp_path / "tickets")))
    assert first.redeem(ticket).subject == "alice"
    assert refused(second, ticket) == "ticket already used"


@pytest.mark.parametrize("shared", [False, True])
def test_a_checked_ticket_is_not_spent_and_a_spent_one_fails_the_check(tmp_path, shared):
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    used = SharedNonces(str(tmp_path / "tickets")) if shared else None
    other = SharedNonces(str(tmp_path / "tickets")) if shared else None
    first, second = Redeemer(SECRET, Clock(), used=used), Redeemer(SECRET, Clock(), used=other)
    assert first.check(ticket).identity == first.check(ticket).identity == ALICE
    assert first.redeem(ticket).subject == "alice"
    with pytest.raises(InvalidTicket, match="ticket already used"):
        first.check(ticket)
    if shared:      # another worker of the instance: spent there too
        with pytest.raises(InvalidTicket, match="ticket already used"):
            second.check(ticket)


@pytest.mark.parametrize("shared", [False, True])
def test_a_checked_ticket_is_spent_once_without_being_opened_again(tmp_path, shared):
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    used = SharedNonces(str(tmp_path / "tickets")) if shared else None
    clock = Clock()
    redeemer = Redeemer(SECRET, clock, used=used)
    checked = redeemer.check(ticket)
    redeemer._open = None           # spending what check opened reads nothing of the ticket
    assert redeemer.redeem(checked) == ALICE
    with pytest.raises(InvalidTicket, match="ticket already used"):
        redeemer.redeem(checked)
    late = Redeemer(SECRET, clock, used=used)
    expiring = late.check(issue(ALICE, SECRET, ttl_s=30, now=1000.0))
    clock.now = 1030.0              # checked in time, spent too late
    with pytest.raises(InvalidTicket, match="ticket expired"):
        late.redeem(expiring)


def test_racing_processes_redeem_a_ticket_exactly_once(tmp_path):
    ticket = issue(ALICE, SECRET, ttl_s=30, now=1000.0)
    directory = str(tmp_path / "tickets")
    SharedNonces(directory)
    children = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:                                    # a worker
            try:
                Redeemer(SECRET, Clock(), used=SharedNonces(directory)).redeem(ticket)
                os._exit(0)
            except InvalidTicket:
                os._exit(1)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert sorted(codes) == [0, 1, 1, 1, 1, 1]


def test_workers_racing_over_many_tickets_redeem_each_exactly_once(tmp_path):
    """Workers claiming the same nonces at the same moment (one ticket sent to every worker,
    thousands of times): each nonce is claimed once between them, never by two workers at
    once (each worker's own lock does not exclude the others: the file's lock must)."""
    path = str(tmp_path / "nonces")
    SharedNonces(path, sets=4096, ways=32).close()      # room to spare: never Full
    nonces = [f"n{i}" for i in range(20_000)]
    workers = 3
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    children = []
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:                                    # a worker
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                used = SharedNonces(path)
                os.write(ready_w, b"r")
                os.read(go_r, 1)                        # all start together
                won = bytes(used.claim(n, expires=2000.0, now=1000.0) for n in nonces)
                (tmp_path / f"won{worker}").write_bytes(won)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    os.close(ready_w)
    os.close(go_r)
    ready = b""
    while len(ready) < workers:
        chunk = os.read(ready_r, workers)
        if not chunk:                                   # a worker died before it was ready
            break
        ready += chunk
    os.close(ready_r)
    os.close(go_w)                                      # go
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert codes == [0] * workers
    won = [(tmp_path / f"won{worker}").read_bytes() for worker in range(workers)]
    claims = [sum(column) for column in zip(*won, strict=True)]
    assert [n for n, count in zip(nonces, claims, strict=True) if count != 1] == []


def test_threads_of_one_worker_claiming_one_nonce_at_once_claim_it_once(tmp_path):
    """lockf locks belong to the process: its threads are kept apart by the table's own lock,
    even when a thread is switched out between its look-up and its write (made certain here
    by a pause there)."""
    import threading
    import time
    used = SharedNonces(str(tmp_path / "nonces"), sets=64, ways=64)
    find = used._cell_of

    def slow_find(value, start):
        found = find(value, start)
        time.sleep(0.01)                # another thread runs now
        return found
    used._cell_of = slow_find
    for nonce in ("first", "second", "third"):
        start, won = threading.Barrier(4), []

        def claim(nonce=nonce, start=start, won=won):
            start.wait()
            won.append(used.claim(nonce, expires=2000.0, now=1000.0))
        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(won) == [False, False, False, True], nonce


UNDER_GEVENT = r'''
from gevent import monkey; monkey.patch_all()
import tempfile
import gevent, greenlet
from actors.auth.shared_nonces import SharedNonces
used = SharedNonces(tempfile.mkdtemp() + "/nonces", sets=64, ways=64)
held, switched = [False], []

class Watched:                      # the table's lock, telling when it is held
    def __init__(self, lock):
        self.lock = lock
    def __enter__(self):
        if not self.lock.acquire(timeout=1):        # held by a greenlet that yielded
            raise RuntimeError("a claim waited for the table's lock")
        held[0] = True
    def __exit__(self, *exc):
        held[0] = False
        self.lock.release()

used._lock = Watched(used._lock)
greenlet.settrace(lambda event, args: held[0] and switched.append(event))
nonces = [f"n{i}" for i in range(500)]

def claim_all():
    won = []
    for nonce in nonces:
        won.append(used.claim(nonce, expires=2000.0, now=1000.0))
        gevent.sleep(0)
    return won
jobs = [gevent.spawn(claim_all) for _ in range(20)]
gevent.joinall(jobs, raise_error=True)
claims = [sum(column) for column in zip(*(job.value for job in jobs))]
print(switched, sorted(set(claims)))
'''


def test_under_gevent_no_greenlet_runs_while_a_claim_holds_the_tables_lock():
    """The table's lock is the OS thread's (gevent's costs more): safe only because nothing in
    a claim yields while holding it, which this pins (a yield there would let another
    greenlet block the whole worker on it)."""
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "[] [1]", done.stdout


def test_the_nonces_file_is_allocated_private_and_shared_by_every_worker(tmp_path):
    path = tmp_path / "nonces"
    first = SharedNonces(str(path), sets=4, ways=2)
    second = SharedNonces(str(path))            # attaches: its sizes are the file's
    assert (second.sets, second.ways) == (4, 2)
    assert path.stat().st_mode & 0o077 == 0
    assert path.stat().st_blocks * 512 >= path.stat().st_size == 64 + 4 * 2 * 12   # not sparse
    assert first.claim("n1", expires=1010.2, now=1000.0)
    assert not second.claim("n1", expires=1010.2, now=1000.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nonces"]       # no draft left


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc (Linux only)")
def test_a_worker_maps_the_whole_nonces_file_when_it_attaches():
    """No page fault on the first look into, or write to, each of its 1,536 pages in the
    middle of a stream's open: they are all mapped when the worker attaches. Read from the
    kernel's own account of the mapping (a count of page faults around 3,000 claims also
    counted those of the test process's heap: 178 and 259 in two CI runs, 0 alone)."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        path = os.path.join(directory, "nonces")
        SharedNonces(path).close()                          # made, as the master does
        attached = SharedNonces(path)
        try:
            assert _resident_kb(path) * 1024 >= len(attached._buf) - 4096
        finally:
            attached.close()


def _resident_kb(path: str) -> int:
    """Kilobytes of `path`'s mapping in this process's page tables (/proc/self/smaps)."""
    resident, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.rstrip().endswith(path)
            elif inside and line.startswith("Rss:"):
                resident += int(line.split()[1])
    return resident


def test_a_file_that_is_not_a_nonces_file_is_refused(tmp_path):
    (tmp_path / "nonces").write_bytes(b"SSELIMIT" + bytes(100))
    with pytest.raises(ValueError, match="not a ticket nonce file"):
        SharedNonces(str(tmp_path / "nonces"))


def test_a_claim_cut_short_before_its_second_was_written_spends_nothing(tmp_path):
    used = SharedNonces(str(tmp_path / "nonces"), sets=1, ways=2)
    digest, at = used._where("n1")
    used._buf[at:at + 8] = digest               # a worker killed between the two writes
    assert not used.used("n1", expires=1010.2, now=1000.0)
    assert used.claim("n1", expires=1010.2, now=1000.0)
    assert not used.claim("n1", expires=1010.2, now=1000.0)
    assert used.claim("n2", expires=1010.2, now=1000.0)   # the one cell was reused, not doubled


def test_a_digest_found_across_two_cells_is_not_the_nonce(tmp_path):
    used = SharedNonces(str(tmp_path / "nonces"), sets=1, ways=4)
    digest, at = used._where("n1")
    used._buf[at:at + 16] = b"\x01" * 4 + digest + b"\x02" * 4   # its bytes straddle cells 0, 1
    used._buf[at + 32:at + 40] = struct.pack("<II", 2000, 2000)   # both cells unexpired
    assert not used.used("n1", expires=1010.2, now=1000.0)
    assert used.claim("n1", expires=1010.2, now=1000.0)
    assert used.used("n1", expires=1010.2, now=1000.0)
    assert not used.claim("n1", expires=1010.2, now=1000.0)


def test_a_tickets_expiry_is_kept_to_the_millisecond_never_past_its_tokens():
    far, near = (Identity("alice", ("*",), ("*",), expires_at=at) for at in (9e9, 1030.0))
    assert Redeemer(SECRET, Clock()).check(issue(far, SECRET, 30, 1000.1234567)).expires \
        == 1030.123
    assert Redeemer(SECRET, Clock()).check(issue(near, SECRET, 30, 1000.0004567)).expires \
        == 1030.0


def test_zero_bytes_across_two_cells_are_no_empty_cell(tmp_path):
    used = SharedNonces(str(tmp_path / "nonces"), sets=1, ways=4)
    # seconds 2000 and 196608 are d0 07 00 00 | 00 00 03 00: four zero bytes across cells 0, 1
    for nonce, expires in (("a", 2000), ("b", 196608), ("c", 5000), ("d", 5000)):
        assert used.claim(nonce, expires=expires, now=1000.0)
    with pytest.raises(Full):           # every cell unexpired: none is taken over
        used.claim("e", expires=5000, now=1000.0)
    assert used.used("a", expires=2000, now=1000.0) and not used.claim("a", 2000, 1000.0)


def test_the_used_nonces_of_expired_tickets_are_forgotten(tmp_path):
    clock = Clock(1000.0)
    used = SharedNonces(str(tmp_path / "tickets"))
    redeemer = Redeemer(SECRET, clock, used=used)
    for _ in range(5):
        redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=1000.0))
    assert len(used) == 5
    clock.now = 1031.5                          # every one of them has expired
    with pytest.raises(InvalidTicket, match="expired"):
        redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=1000.0))
    redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=1031.5))
    assert len(used) == 1


def test_the_shared_nonces_are_bounded_by_refusing_rather_than_forgetting(tmp_path):
    clock = Clock(1000.0)
    used = SharedNonces(str(tmp_path / "tickets"), sets=1, ways=3)
    redeemer = Redeemer(SECRET, clock, used=used)
    for _ in range(3):
        redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now))
    assert refused(redeemer, issue(ALICE, SECRET, ttl_s=30, now=clock.now)).startswith(
        "too many tickets in flight")
    assert len(used) == 3
    clock.now = 1031.0                          # their second (1030) has passed
    assert redeemer.redeem(issue(ALICE, SECRET, ttl_s=30, now=clock.now)).subject == "alice"
    assert len(used) == 1


def test_the_workers_of_an_instance_share_one_random_ticket_secret(tmp_path):
    path = str(tmp_path / "ticket-secret")
    first, second = instance_secret(path), instance_secret(path)
    assert first == second and len(first) == 32
    assert os.stat(path).st_mode & 0o077 == 0
    assert instance_secret(str(tmp_path / "other")) != first


def test_a_secret_can_be_rotated_in_two_deploys_without_refusing_a_ticket():
    """AUTH_TICKET_OTHER_SECRET: instances of consecutive steps of the rotation run side by
    side in each rolling deploy, and take each other's tickets; each still spends one once."""
    old, new = b"o" * 32, b"n" * 32
    steps = [(old, None), (old, new), (new, old), (new, None)]    # (signs with, also takes)
    for (signs_a, other_a), (signs_b, other_b) in zip(steps, steps[1:], strict=False):
        a, b = Redeemer(signs_a, Clock(), other=other_a), Redeemer(signs_b, Clock(), other=other_b)
        for ticket, redeemer in ((issue(ALICE, signs_a, 30, 1000.0), b),
                                 (issue(ALICE, signs_b, 30, 1000.0), a)):
            assert redeemer.redeem(ticket) == ALICE
            assert refused(redeemer, ticket) == "ticket already used"
    assert refused(Redeemer(new, Clock()), issue(ALICE, old, 30, 1000.0)) == "bad ticket signature"
    with pytest.raises(ValueError):
        Redeemer(SECRET, Clock(), other=b"short")


@pytest.mark.parametrize("nonce", ["Abc_-0123456789xyzXYZ_", "../../escaped", "a/b", "",
                                   "x" * 300, "\u00ff\u0000..", "\ud800"])
def test_a_nonce_is_kept_as_a_digest_whatever_it_is(tmp_path, nonce):
    """Whatever a ticket signed with the shared secret carries as its nonce (a lone surrogate
    too: JSON can name one), it is claimed once, as a digest: its text is nowhere."""
    path = tmp_path / "tickets"
    used = SharedNonces(str(path))
    assert not used.used(nonce, expires=1010.2, now=1000.0)
    assert used.claim(nonce, expires=1010.2, now=1000.0)
    assert used.used(nonce, expires=1010.2, now=1000.0)
    assert not used.claim(nonce, expires=1010.2, now=1000.0)
    assert len(nonce) < 8 or nonce.encode("utf-8", "surrogatepass") not in path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tickets"]


def test_the_shared_table_takes_8_000_tickets_a_second_of_30_s_without_refusing_one(
        tmp_path, monkeypatch):
    """README: room for 8,000 opens a second with the default ticket lifetime. Each nonce
    holds its cell until the second after its ticket's expiry (~31 s); 45 s reach the steady
    state (about 250,000 held)."""
    from actors.auth import shared_nonces
    chance = random.Random(7)
    monkeypatch.setattr(shared_nonces.secrets, "token_bytes", chance.randbytes)   # its key
    used = SharedNonces(str(tmp_path / "nonces"))
    rate, refused = 8_000, 0
    for tick in range(45 * rate):
        now = 1000.0 + tick / rate
        try:
            used.claim(chance.randbytes(16).hex(), expires=now + 30, now=now)
        except shared_nonces.Full:
            refused += 1
    assert refused == 0 and len(used) > 240_000
    used.close()


def test_a_ticket_that_fit_in_gunicorns_request_line_is_still_issued():
    """75 event types named by 32 hex digits (UUID-like): the plain ticket is ~3,620
    characters and fits gunicorn's request line of 4,094; deflated it was ~2,100 (hex deflates
    poorly), over a cap of 2,048: 422 for a ticket that had worked (a review of this change)."""
    import os

    from actors.auth.tickets import Redeemer, issue
    from actors.auth.identity import Identity
    types = tuple(os.urandom(16).hex() for _ in range(75))
    wide = Identity("alice", types, ("*",), expires_at=10_000.0)
    ticket = issue(wide, b"t" * 32, ttl_s=30, now=1000.0)     # raises TicketTooLarge on HEAD
    assert len(f"GET /events?ticket={ticket} HTTP/1.1") <= 4094
    assert Redeemer(b"t" * 32, lambda: 1000.0).redeem(ticket) == wide


def test_no_mutation_of_a_ticket_opens_and_none_raises_anything_but_a_refusal():
    """2,000 tickets, plain and deflated, each with 1-3 characters changed, dropped or added
    (URL-safe, base64's others, padding, a dot, non-ASCII, NUL): each is refused with
    InvalidTicket, never taken and never another exception (a 500 at the edge)."""
    rng = random.Random(7)
    wide = Identity("bob", tuple(f"orders.t{i}.created" for i in range(80)), ("*",), 10_000.0)
    redeemer = Redeemer(SECRET, Clock())
    alphabet = "ABCxyz019-_.=+/%é\x00 "
    for n in range(2000):
        ticket = issue((ALICE, wide)[n % 2], SECRET, ttl_s=30, now=1000.0)
        chars = list(ticket)
        for _ in range(rng.randint(1, 3)):
            at, what = rng.randrange(len(chars)), rng.random()
            if what < 0.4:
                chars[at] = rng.choice(alphabet)
            elif what < 0.7:
                del chars[at]
            else:
                chars.insert(at, rng.choice(alphabet))
        mutated = "".join(chars)
        if mutated != ticket:
            with pytest.raises(InvalidTicket):
                redeemer.check(mutated)
