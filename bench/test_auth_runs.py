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
    verdicts = {t.split(" via ")[1][:9]: v for t, _m, v in auth_runs.verdicts({"connect": c})}
    assert verdicts == {"`/events?": "MET", "`Authoriz": "MISS"}


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
    c = auth_runs.summarize_connect(rows({"off": [1000, 3000, 3000], "ticket": [900, 850, 2700],
                                          "bearer": [700, 2100, 2100]}), 1000, 3)
    assert c["paired"]["ticket"] == 0.9 and round(c["paired"]["bearer"], 2) == 0.7
    low, high = c["interval"]["ticket"]
    assert low <= 0.9 <= high and low < high
    found = {t.split(" via ")[1][:9]: (m, v) for t, m, v in auth_runs.verdicts({"connect": c})}
    assert found["`/events?"][1] == "MET" and "90 % interval" in found["`/events?"][0]
    assert found["`Authoriz"][1] == "MISS"
