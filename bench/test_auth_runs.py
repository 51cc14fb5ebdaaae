"""The auth runs' books and verdicts: `.venv/bin/python -m pytest bench/test_auth_runs.py`."""
from __future__ import annotations

import auth_runs


def rows(rates: dict) -> list[dict]:
    return [{"round": k + 1, "mode": mode, "conn_per_s": rate, "failed": 0,
             "cpu_us_per_open": 1000.0}
            for mode, per_round in rates.items() for k, rate in enumerate(per_round)]


def test_ratios_are_between_medians_and_80_percent_is_met():
    c = auth_runs.summarize_connect(rows({"off": [900, 1000, 1100], "ticket": [800, 850, 100],
                                          "bearer": [700, 790, 10_000]}), 1000, 3)
    assert c["median"] == {"off": 1000, "ticket": 800, "bearer": 790}
    c = auth_runs.summarize_connect(rows({"off": [900, 1000, 1100, 1000, 1000],
                                          "ticket": [720, 800, 880, 810, 790],
                                          "bearer": [711, 790, 869, 780, 800]}), 1000, 5)
    assert verdicts_of(c) == {"`/events?": "MET", "`Authoriz": "MISS"}


def verdicts_of(c: dict) -> dict:
    return {t.split(" via ")[1][:9]: v for t, _m, v in auth_runs.verdicts({"connect": c})}


def test_rounds_that_disagree_are_not_judged():
    """On a VM whose speed swings within rounds, the rounds' ratios scatter (0.55 to 1.28 in a
    run of 2026-12-06) and their median can land on either side of 80 %: no verdict then."""
    swinging = {"off": [1000, 1000, 1000, 1000, 1000], "ticket": [990, 710, 550, 1280, 820],
                "bearer": [740, 690, 770, 560, 760]}
    c = auth_runs.summarize_connect(rows(swinging), 1000, 5)
    low, high = c["interval"]["ticket"]
    assert c["paired"]["ticket"] == 0.82 and high - low > auth_runs.MAX_INTERVAL
    found = {t.split(" via ")[1][:9]: (m, v) for t, m, v in auth_runs.verdicts({"connect": c})}
    assert found["`/events?"][1] == "n/a" and "not judged" in found["`/events?"][0]
    assert found["`Authoriz"][1] == "n/a"
    failed = rows(swinging)
    failed[0]["failed"] = 1        # a failed open is a miss, however the rounds scatter
    c = auth_runs.summarize_connect(failed, 1000, 5)
    assert set(verdicts_of(c).values()) == {"MISS"}


def test_a_failed_open_is_a_miss_even_above_the_ratio():
    r = rows({"off": [1000], "ticket": [1000], "bearer": [1000]})
    r[1]["failed"] = 1
    c = auth_runs.summarize_connect(r, 1000, 1)
    assert c["status"] == "LOSS"
    assert {v for _t, _m, v in auth_runs.verdicts({"connect": c})} == {"MISS"}


def private(**over) -> dict:
    base = {"status": "ok", "subjects": 1000, "held": 1000, "offered_per_s": 19_990,
            "delivered_per_s": 19_900, "missing": 0, "dups": 0, "stale": 0, "closed_mid": 0,
            "p50_ms": 20.0, "p99_ms": 90.0, "latency_samples": 10, "cpu_pct": 80.0, "r": 20_000,
            "warmup_s": 2.0, "steady_s": 5.0}
    return {**base, **over}


def test_private_verdicts():
    assert [v for _t, _m, v in auth_runs.verdicts({"private": private()})] == ["MET"] * 3
    leaked = auth_runs.verdicts({"private": private(stale=1)})
    assert [v for _t, _m, v in leaked] == ["MET", "MISS", "MET"]
    slow = auth_runs.verdicts({"private": private(delivered_per_s=15_000, p99_ms=101.0)})
    assert [v for _t, _m, v in slow] == ["MISS", "MET", "MISS"]


def test_the_section_of_latest_md_is_replaced_and_the_rest_kept(tmp_path):
    latest = tmp_path / "latest.md"
    latest.write_text("# matrix\n\n| a | b |\n")
    info = {"cpu": "cpu", "cores": 2, "loadavg_at_start": [0, 0, 0], "code": "abc"}
    for delivered in (1000, 2000):
        auth_runs.add_section(latest, {"private": private(delivered_per_s=delivered)}, info,
                              "bench/run --auth-only")
    text = latest.read_text()
    assert text.startswith("# matrix\n\n| a | b |\n\n")
    assert text.count(auth_runs.SECTION_START) == 1 and text.count(auth_runs.SECTION_END) == 1
    assert "| 2,000 |" in text and "| 1,000 |" not in text


def test_a_rebuilt_section_keeps_the_time_of_its_run(tmp_path):
    """`bench/run --rebuild` renders the section again from auth.json: the run's own time."""
    latest = tmp_path / "latest.md"
    info = {"cpu": "cpu", "cores": 2, "loadavg_at_start": [0, 0, 0], "code": "abc",
            "run_at": "2026-12-01 06:26 UTC"}
    auth_runs.add_section(latest, {"private": private()}, info, "bench/run")
    assert "Run on 2026-12-01 06:26 UTC with `bench/run`" in latest.read_text()


def test_the_verdict_compares_the_modes_of_one_round_so_the_machines_drift_cancels():
    """Rounds run minutes apart on a VM whose speed drifts: the medians of each mode's rounds
    compared rounds of different speeds (here 900 of a slow round against 3,000 of fast ones).
    The modes of one round run side by side: their ratio is the paired estimate."""
    c = auth_runs.summarize_connect(rows({
        "off": [1000, 3000, 3000, 1000, 3000, 1000, 3000],
        "ticket": [900, 850, 2700, 880, 2640, 890, 2610],
        "bearer": [700, 2100, 2100, 690, 2130, 700, 2090]}), 1000, 7)
    assert c["ratio"]["ticket"] == 0.3          # 900 of a slow round over 3,000 of fast ones
    assert round(c["paired"]["ticket"], 2) == 0.88 and round(c["paired"]["bearer"], 2) == 0.7
    low, high = c["interval"]["ticket"]
    assert low <= c["paired"]["ticket"] <= high and low < high
    found = {t.split(" via ")[1][:9]: (m, v) for t, m, v in auth_runs.verdicts({"connect": c})}
    assert found["`/events?"][1] == "MET" and "90 % interval" in found["`/events?"][0]
    assert found["`Authoriz"][1] == "MISS"


def test_the_anonymous_mode_is_a_column_of_its_own_and_older_runs_render_without_it():
    """A gateway with AUTH_MODE=optional, opened without a credential: a fourth column and its
    ratio; a run of three modes (before it) renders as it did, with no empty column."""
    four = auth_runs.summarize_connect(rows({"off": [1000, 2000], "ticket": [800, 1600],
                                             "bearer": [700, 1400], "anonymous": [950, 2000]}),
                                       1000, 2)
    assert four["paired"]["anonymous"] == 0.975 and four["median"]["anonymous"] == 1475
    table = "\n".join(auth_runs.tables({"connect": four}))
    assert "| anonymous conn/s |" in table and "| anonymous / no auth |" in table
    assert "| 1 | 1,000 | 800 | 700 | 950 | 0.80 | 0.70 | 0.95 | 0 |" in table
    assert "AUTH_MODE=optional" in table and "anonymous 1,475 (0.98)" in auth_runs.text(
        {"connect": four})
    assert [t for t, _m, _v in auth_runs.verdicts({"connect": four})] == [
        t for t, _m, _v in auth_runs.verdicts({"connect": auth_runs.summarize_connect(
            rows({"off": [1000], "ticket": [800], "bearer": [700]}), 1000, 1)})]
    three = auth_runs.summarize_connect(rows({"off": [1000], "ticket": [800], "bearer": [700]}),
                                        1000, 1)
    old = "\n".join(auth_runs.tables({"connect": three}))
    assert "anonymous" not in old and "AUTH_MODE=optional" not in old
    assert "| 1 | 1,000 | 800 | 700 | 0.80 | 0.70 | 0 | 1,000 / 1,000 / 1,000 |" in old
    assert "anonymous" not in auth_runs.text({"connect": three})


def test_the_runs_hash_seed_is_told_and_kept_by_a_rebuild():
    c = {**auth_runs.summarize_connect(rows({"off": [1000], "ticket": [800], "bearer": [700]}),
                                       1000, 1), "hash_seed": 1234}
    rebuilt = auth_runs.resummarized({"connect": c})["connect"]
    assert rebuilt["hash_seed"] == 1234
    assert "(PYTHONHASHSEED=1234)" in "\n".join(auth_runs.tables({"connect": rebuilt}))
    del c["hash_seed"]
    assert "PYTHONHASHSEED" not in "\n".join(auth_runs.tables({"connect": c}))


def test_what_a_ticket_costs_to_issue_is_told_beside_the_rate():
    r = rows({"off": [1000, 1000], "ticket": [800, 800], "bearer": [700, 700]})
    for row, (rate, cpu) in zip([x for x in r if x["mode"] == "ticket"],
                                [(1500, 700.0), (1300, 900.0)], strict=True):
        row.update(tickets_per_s=rate, cpu_us_per_ticket=cpu)
    c = auth_runs.summarize_connect(r, 1000, 2)
    assert (c["tickets_per_s"], c["cpu_us_per_ticket"]) == (1400, 800.0)
    assert "1,400 tickets/s, 800 us of gateway CPU each" in "\n".join(
        auth_runs.tables({"connect": c}))
