"""Plots a benches/scale.sh JSON report: python3 benches/scale_plot.py REPORT.json [OUT.png].

Three panels, edge against direct sshd: memory per idle session by sessions held, MiB/s (and
the edge's CPU s/GiB) by concurrent streams, logins/s (and p99) by workers. Needs matplotlib;
scale.sh calls it only when matplotlib is importable.
"""

import json
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    report = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1].rsplit(".", 1)[0] + ".png"
    fig, (idle, bulk, logins) = plt.subplots(1, 3, figsize=(15, 4.5))

    rows = report["idle"]
    x = [r["sessions"] for r in rows]
    kib = lambda side: [(r[side]["per_session_bytes"] or 0) / 1024 for r in rows]
    idle.plot(x, kib("edge"), "o-", label="edge PSS / session")
    idle.plot(x, kib("direct"), "s--", label="sshd / session")
    idle.set(xscale="log", yscale="log", xlabel="idle sessions held", ylabel="KiB per session",
             title="idle sessions: memory")
    total = idle.twinx()
    total.plot(x, [(r["edge"]["held_bytes"] or 0) / 2**20 for r in rows], "d:", color="C3",
               label="edge PSS held, MiB")
    total.plot(x, [r["edge"]["after_bytes"] / 2**20 for r in rows], "^:", color="C2",
               label="edge PSS after close, MiB")
    total.set_ylabel("edge PSS, MiB")
    idle.legend(loc="center left")
    total.legend(loc="upper left")

    rows = report["bulk"]
    x = [r["streams"] for r in rows]
    bulk.plot(x, [r["edge"]["mib_per_sec"] for r in rows], "o-", label="edge MiB/s")
    bulk.plot(x, [r["direct"]["mib_per_sec"] for r in rows], "s--", label="direct MiB/s")
    bulk.set(xscale="log", xlabel="concurrent transfers", ylabel="MiB/s", title="bulk")
    cpu = bulk.twinx()
    cpu.plot(x, [r["edge"]["cpu_secs_per_gib"] or 0 for r in rows], "d:", color="C3",
             label="edge CPU s/GiB")
    cpu.set_ylabel("edge CPU s/GiB")
    bulk.legend(loc="upper left")
    cpu.legend(loc="lower right")

    rows = report["logins"]
    x = [r["workers"] for r in rows]
    logins.plot(x, [r["edge"]["per_sec"] for r in rows], "o-", label="edge logins/s")
    logins.plot(x, [r["direct"]["per_sec"] for r in rows], "s--", label="direct logins/s")
    logins.set(xscale="log", xlabel="workers", ylabel="logins/s", title="logins")
    p99 = logins.twinx()
    p99.plot(x, [r["edge"]["p99_ms"] or 0 for r in rows], "d:", color="C3", label="edge p99 ms")
    p99.plot(x, [r["direct"]["p99_ms"] or 0 for r in rows], "v:", color="C4",
             label="direct p99 ms")
    p99.set_ylabel("p99 ms")
    logins.legend(loc="upper left")
    p99.legend(loc="lower right")

    for ax, key in ((idle, "idle"), (bulk, "bulk"), (logins, "logins")):
        ticks = [r[{"idle": "sessions", "bulk": "streams", "logins": "workers"}[key]]
                 for r in report[key]]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.suptitle(f"ssh-edge scale, {report['cores']} cores, {report['date']}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
