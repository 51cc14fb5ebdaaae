"""Tables (stdout and Markdown), ratios to the peers, the targets of issue 6, and the PNG plot."""
from __future__ import annotations

from pathlib import Path

PEERS = ("nchan", "python")
MEASURED = ("ok", "saturated", "LOSS")
COLUMNS = [
    # header, width, formatter
    ("system", 8, lambda r: r["system"]),
    ("N", 5, lambda r: str(r["n"])),
    ("R", 5, lambda r: str(r["r"]) + ("*" if r.get("probe") else "")),
    ("held", 5, lambda r: _int(r.get("held"))),
    ("deliv/s", 8, lambda r: _num(r.get("delivered_per_s"))),
    ("p50ms", 6, lambda r: r.get("latency_note") or _ms(r.get("p50_ms"))),
    ("p95ms", 6, lambda r: r.get("latency_note") or _ms(r.get("p95_ms"))),
    ("p99ms", 6, lambda r: r.get("latency_note") or _ms(r.get("p99_ms"))),
    ("kafka99", 7, lambda r: _ms(r.get("floor_p99_ms"))),
    ("miss", 6, lambda r: _int(r.get("missing"))),
    ("dup", 4, lambda r: _int(r.get("dups"))),
    ("cpu%", 5, lambda r: _pct(r.get("cpu_pct"))),
    ("wait%", 5, lambda r: _pct(r.get("server_wait_pct"))),
    ("RSS MB", 6, lambda r: _f1(r.get("rss_mb"))),
    ("KB/conn", 7, lambda r: _f1(r.get("kb_per_conn"))),
    ("conn/s", 6, lambda r: _num(r.get("conn_per_s"))),
    ("LG cpu%", 9, lambda r: _lg(r)),
    ("other%", 6, lambda r: _pct(r.get("others_cpu_pct"))),
    ("status", 9, lambda r: r.get("status", "")),
]


def _int(v):
    return "-" if v is None else str(int(v))


def _num(v):
    if v is None:
        return "-"
    if v >= 100_000:
        return f"{v / 1000:.0f}k"
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _pct(v):
    return "-" if v is None else f"{v:.0f}"


def _f1(v):
    return "-" if v is None else f"{v:.1f}"


def _lg(r):
    if r.get("lg_cpu_pct") is None:
        return "-"
    return f"{r['lg_cpu_pct']:.0f}/{r['lg_cpu_max_pct']:.0f}"


def _cells(r: dict) -> list[str]:
    return [fmt(r) if r.get("status") in MEASURED or head in ("system", "N", "R", "status")
            else "" for head, _w, fmt in COLUMNS]


def row_text(r: dict) -> str:
    cells = _cells(r)
    line = "  ".join(c.rjust(w) if i else c.ljust(w)
                     for i, (c, (_h, w, _f)) in enumerate(zip(cells, COLUMNS)))
    if r.get("note"):
        line += f"  ({r['note']})"
    return line


def print_row(r: dict) -> None:
    print(row_text(r), flush=True)


def header_text() -> str:
    return "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w, _f) in enumerate(COLUMNS))


def _find(results, system, n, r):
    return next((x for x in results if x["system"] == system and x["n"] == n and x["r"] == r
                 and x.get("status") in MEASURED), None)


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _x(v):
    return "-" if v is None else (f"{v:.2f}x" if v < 10 else f"{v:.0f}x")


RATIO_FIELDS = [("deliv/s", "delivered_per_s"), ("p99", "p99_ms"), ("cpu", "cpu_pct"),
                ("KB/conn", "kb_per_conn"), ("conn/s", "conn_per_s")]


def ratios(results) -> list[list[str]]:
    rows = []
    peers = [p for p in PEERS if any(x["system"] == p for x in results)]
    for g in results:
        if g["system"] != "gateway" or g.get("status") not in MEASURED:
            continue
        row = [str(g["n"]), str(g["r"]) + ("*" if g.get("probe") else "")]
        for peer in peers:
            other = _find(results, peer, g["n"], g["r"])
            for _label, key in RATIO_FIELDS:
                row.append(_x(_ratio(g.get(key), other.get(key))) if other else "-")
        rows.append(row)
    return rows, peers


def saturation(results) -> list[str]:
    lines = []
    for system in dict.fromkeys(x["system"] for x in results):
        mine = [x for x in results if x["system"] == system and x.get("status") in MEASURED]
        errors = [x for x in results if x["system"] == system and x.get("status") == "error"]
        if errors:
            lines.append(f"- {system}: ERROR {errors[0]['note']}")
        if not mine:
            continue
        hit = [x for x in mine if x.get("status") == "saturated"]
        best = max(mine, key=lambda x: x.get("delivered_per_s") or 0, default=None)
        if hit:
            parts = [f"N={x['n']} R={x['r']} ({x['note']}; delivered {_num(x['delivered_per_s'])}/s)"
                     for x in hit]
            lines.append(f"- {system}: saturated at " + ", ".join(parts))
        elif mine:
            top = max(mine, key=lambda x: (x["n"] * x["r"]))
            lines.append(f"- {system}: not saturated up to N={top['n']} R={top['r']}")
        if best:
            lines[-1] += f"; best {_num(best['delivered_per_s'])} deliveries/s " \
                         f"(N={best['n']} R={best['r']})"
    return lines


def _sat_rate(results, system, n):
    mine = [x for x in results if x["system"] == system and x["n"] == n
            and x.get("status") in MEASURED]
    if not mine:
        return None, False
    return max(x.get("delivered_per_s") or 0 for x in mine), any(
        x.get("status") == "saturated" for x in mine)


def targets(results, info) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the gateway."""
    out = []

    def verdict(ok):
        return "n/a" if ok is None else ("PASS" if ok else "MISS")

    gw = [x for x in results if x["system"] == "gateway" and x.get("status") in MEASURED]
    at2000 = [x for x in gw if x["n"] == 2000]
    if at2000:
        held = max(x.get("held") or 0 for x in at2000)
        out.append(("2,000 concurrent streams held", f"{held} held", verdict(held >= 2000)))
        first = min(at2000, key=lambda x: x["r"])
        kb = first.get("kb_per_conn")
        out.append(("idle RSS <= 40 KB per connection",
                    f"{kb:.1f} KB/conn at N=2000 (R={first['r']} run, after connect)",
                    verdict(kb is not None and kb <= 40)))
    else:
        out.append(("2,000 concurrent streams held", "not run", "n/a"))
        out.append(("idle RSS <= 40 KB per connection", "not run", "n/a"))
    for n, r, p99_max in ((1000, 100, 50), (2000, 100, 250), (1000, 500, None)):
        x = _find(results, "gateway", n, r)
        name = f"{n:,} x {r}/s: zero loss" + (f", p99 <= {p99_max} ms" if p99_max else "")
        if x is None:
            out.append((name, "not run (or skipped: saturated)", "MISS" if any(
                y["system"] == "gateway" and y["n"] == n and y["r"] == r for y in results)
                else "n/a"))
            continue
        lost = (x.get("missing") or 0) + (x.get("dups") or 0) + (x.get("closed_mid") or 0)
        ok = lost == 0 and x.get("held") == n and x.get("status") != "saturated"
        text = f"{x.get('missing')} missing, {x.get('dups')} dup, held {x.get('held')}"
        if x.get("status") == "saturated":
            text += f" (saturated: {x.get('note')}; missing = not delivered by the end of the drain)"
        if p99_max:
            text += f", p99 {_ms(x.get('p99_ms'))} ms"
            ok = ok and x.get("p99_ms") is not None and x["p99_ms"] <= p99_max
        out.append((name, text, verdict(ok)))
    ours, ours_sat = _sat_rate(results, "gateway", 1000)
    peer, peer_sat = _sat_rate(results, "python", 1000)
    if ours is not None and peer:
        text = (f"{_num(ours)}/s{'' if ours_sat else ' (not saturated: >=)'} vs python "
                f"{_num(peer)}/s{'' if peer_sat else ' (not saturated)'} = {ours / peer:.1f}x")
        ok = ours >= 3 * peer if (peer_sat or ours >= 3 * peer) else None
        out.append(("saturation deliveries/s >= 3x python peer at N=1,000", text, verdict(ok)))
    else:
        out.append(("saturation deliveries/s >= 3x python peer at N=1,000", "not measured", "n/a"))
    rates = sorted(x["conn_per_s"] for x in gw if x["n"] >= 1000 and x.get("conn_per_s"))
    if rates:
        med = rates[len(rates) // 2]
        out.append(("new streams accepted at >= 500/s",
                    f"median {med:.0f}/s, min {rates[0]:.0f}/s (N>=1000 connects)",
                    verdict(med >= 500)))
    else:
        out.append(("new streams accepted at >= 500/s", "not run", "n/a"))
    g = info.get("grpc") or {}
    if g.get("p99_ms") is not None:
        out.append(("gRPC GetStats p99 <= 50 ms during 1,000 x 100/s",
                    f"p99 {g['p99_ms']} ms (p50 {g['p50_ms']}, {g['count']} calls, "
                    f"{g['errors']} errors)", verdict(g["p99_ms"] <= 50 and not g["errors"])))
    else:
        out.append(("gRPC GetStats p99 <= 50 ms during 1,000 x 100/s",
                    "n/a" + (f" ({g['error']})" if g.get("error") else ""), "n/a"))
    return out


def _machine_lines(info) -> list[str]:
    v = info.get("versions", {})
    return [
        f"Machine: {info.get('cpu')} x {info.get('cores')} cores, {info.get('memory_gb')} GB, "
        f"{info.get('os')}, kernel {info.get('kernel')}; load average at start "
        f"{info.get('loadavg_at_start')}; descriptor limit {info.get('nofile')}.",
        f"Software: Python {info.get('python')}, Apache Kafka {info.get('kafka')} (1 broker, "
        f"1 partition), gunicorn {v.get('gunicorn')}, gevent {v.get('gevent')}, kafka-python "
        f"{v.get('kafka-python')}, pykka {v.get('pykka')}; peers: starlette {v.get('starlette')}, "
        f"uvicorn {v.get('uvicorn')}, aiokafka {v.get('aiokafka')}.",
        "Systems: " + "; ".join(f"{k} = {d}" for k, d in info.get("systems", {}).items()) + ".",
        f"Gateway code: commit {info.get('code')}. Run: {info.get('duration_s')} s; "
        f"settings {info.get('settings')}.",
    ]


def build(results, info) -> dict:
    text = ["", header_text()] + [row_text(r) for r in results]
    ratio_rows, peers = ratios(results)
    md = ["# SSE gateway benchmark: latest run", ""]
    md += _machine_lines(info)
    md += ["", "## Results", "",
           "R* = saturation probe beyond the matrix. deliv/s = events received per second by all "
           "clients in the steady window; latency = producer send -> client receipt; cpu% of one "
           "core (all of the system's processes); KB/conn = (RSS with N idle streams - RSS "
           "of the fresh server) / N; LG cpu% = load generator total / busiest process; kafka99 = p99 "
           "of a plain Kafka consumer in the same window (the floor); other% = CPU used by "
           "processes outside the benchmark, and wait% = time the server's threads were ready to "
           "run but had no CPU (both: noise from the machine).", ""]
    heads = [h for h, _w, _f in COLUMNS] + ["note"]
    md.append("| " + " | ".join(heads) + " |")
    md.append("|" + "|".join("---" for _ in heads) + "|")
    for r in results:
        cells = _cells(r)
        md.append("| " + " | ".join(cells + [r.get("note", "")]) + " |")
    if ratio_rows:
        sub = [label for label, _k in RATIO_FIELDS]
        heads = ["N", "R"] + [f"{label} vs {p}" for p in peers for label in sub]
        text += ["", "Gateway / peer ratios (deliv/s, conn/s: above 1 is better; p99, cpu, "
                 "KB/conn: below 1 is better)"]
        widths = [max(6, len(h)) for h in heads]
        text.append("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
        text += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in ratio_rows]
        md += ["", "## Gateway as a ratio to each peer", "",
               "gateway / peer: deliv/s and conn/s above 1 is better; p99, cpu, KB/conn below 1 "
               "is better. At a saturated peer the ratios compare unequal loads.", ""]
        md.append("| " + " | ".join(heads) + " |")
        md.append("|" + "|".join("---" for _ in heads) + "|")
        md += ["| " + " | ".join(row) + " |" for row in ratio_rows]
    sat = saturation(results)
    text += ["", "Saturation points:"] + sat
    md += ["", "## Saturation points", ""] + sat
    tg = targets(results, info)
    text += ["", "Targets (gateway, this machine, one worker):"]
    text += [f"  [{v:>4}] {t}: {m}" for t, m, v in tg]
    md += ["", "## Targets (gateway)", "", "| target | measured | verdict |", "|---|---|---|"]
    md += [f"| {t} | {m} | {v} |" for t, m, v in tg]
    other = [r for r in results if r.get("status") in MEASURED]
    if other:
        kafka = max(r.get("kafka_cpu_pct") or 0 for r in other)
        prod = max(r.get("producer_cpu_pct") or 0 for r in other)
        lg = max(r.get("lg_cpu_max_pct") or 0 for r in other)
        note = (f"Load generator: busiest process at most {lg:.0f}% of a core; producer at most "
                f"{prod:.0f}%, Kafka broker at most {kafka:.0f}% (all on the same 2 cores).")
        text += ["", note]
        md += ["", note]
    return {"text": "\n".join(text), "markdown": "\n".join(md) + "\n"}


def plot(results, path: Path, info) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({r["r"] for r in results if not r.get("probe")})
    systems = list(dict.fromkeys(r["system"] for r in results))
    colors = {"gateway": "tab:blue", "nchan": "tab:green", "python": "tab:orange"}
    fig, axes = plt.subplots(2, len(rates), figsize=(4.2 * len(rates), 7), squeeze=False)
    for col, rate in enumerate(rates):
        for system in systems:
            pts = sorted((r for r in results if r["system"] == system and r["r"] == rate
                          and r.get("status") in MEASURED), key=lambda r: r["n"])
            if not pts:
                continue
            ns = [p["n"] for p in pts]
            for row, key in ((0, "delivered_per_s"), (1, "p99_ms")):
                ax = axes[row][col]
                ys = [p.get(key) for p in pts]
                ax.plot(ns, ys, marker="o", color=colors.get(system), label=system)
                for p, y in zip(pts, ys):
                    if p.get("status") == "saturated" and y is not None:
                        ax.plot([p["n"]], [y], marker="x", markersize=12, color="red")
        axes[0][col].plot(sorted({r["n"] for r in results}),
                          [n * rate for n in sorted({r["n"] for r in results})],
                          linestyle=":", color="grey", label="offered N x R")
        axes[0][col].set_title(f"R = {rate} events/s")
        axes[0][col].set_ylabel("delivered events/s")
        axes[1][col].set_ylabel("p99 latency (ms)")
        for row in (0, 1):
            axes[row][col].set_xlabel("N clients")
            axes[row][col].set_yscale("log")
            axes[row][col].grid(True, which="both", alpha=0.3)
        axes[0][col].legend(fontsize=8)
    fig.suptitle(f"SSE fan-out, {info.get('cores')} cores ({info.get('cpu')}); "
                 "red x = saturated", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
