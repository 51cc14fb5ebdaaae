"""bench/open_real.py's credentials and report:
`.venv/bin/python -m pytest bench/test_open_real.py`."""
from __future__ import annotations

from types import SimpleNamespace

import open_real
from actors.auth.tickets import Redeemer


def test_its_tickets_are_taken_by_a_gateway_with_the_secret():
    redeemer = Redeemer(open_real.TICKET_SECRET.encode())
    tickets = open_real.credentials("ticket", 3)
    identities = [redeemer.redeem(ticket) for ticket in tickets]
    assert len({i.subject for i in identities}) == 3
    assert all(i.scope_types == ("*",) and i.scope_sources == ("*",) for i in identities)
    assert open_real.credentials("off", 2) == [None, None]


def test_the_anonymous_gateway_is_optional_with_the_whole_scope():
    env = open_real.kind_env("anonymous", 7)
    assert (env["AUTH_MODE"], env["AUTH_ANONYMOUS_SCOPE"]) == ("optional",
                                                               "event_types=*;sources=*")
    assert open_real.kind_env("off", 7)["PYTHONHASHSEED"] == env["PYTHONHASHSEED"] == "7"


def test_the_report_takes_each_kinds_median_round_and_divides_by_no_auth(capsys):
    def rounds(*nets):
        return [{"net": n * 1000, "total": n * 1250} for n in nets]
    found = {"off": rounds(800, 790, 900), "ticket": rounds(1000, 10, 1001)}
    open_real.report(found, SimpleNamespace(rounds=3, opens=1000, inflight=64), 7)
    lines = capsys.readouterr().out.splitlines()
    assert "net   1000k  total   1250k  no auth / ticket: net 0.80, total 0.80" in lines[2]


def test_the_cache_misses_are_shown_beside_no_auths(capsys):
    found = {kind: [{"net": 1e6, "total": 1e6, "i1": i1, "d1": 1000.0}]
             for kind, i1 in (("off", 2000.0), ("bearer", 3000.0))}
    open_real.report(found, SimpleNamespace(rounds=1, opens=1000, inflight=64), 7)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == ["bearer", "instructions", "3.0k", "data", "1.0k", "kind", "/",
                                 "no", "auth:", "1.50", "and", "1.00"]
