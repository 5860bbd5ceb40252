"""Plots for BENCHMARKS.md from vectorgate-bench's results.json, and the digits data set.

  python bench/plot.py digits FILE          write scikit-learn's digits as label<TAB>v1,...
  python bench/plot.py plots RESULTS DIR    recall vs QPS and latency vs data size PNGs
"""
import json
import sys


def digits(path):
    from sklearn.datasets import load_digits

    d = load_digits()
    with open(path, "w") as f:
        for label, row in zip(d.target, d.data):
            f.write(f"{int(label)}\t{','.join(str(float(x)) for x in row)}\n")


def caption(res):
    return f"{res['command']}\n{res['machine']}, {res['date']}"


def finish(fig, ax, res, title, path):
    """Grid, legend, title, the command/machine/date caption; saved to `path`."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=11)
    fig.text(0.01, 0.005, caption(res), fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    return path


def plots(results, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.load(open(results))
    recs = [r for r in res["records"] if r["data"] != "digits"]
    written = []

    # Recall@10 against QPS: the hnsw_ef sweep, unfiltered and at 1%.
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for n in sorted({r["n"] for r in recs if r["section"] == "ef"}):
        for filt, style in (("no filter", "-o"), ("1% pass", "--s")):
            pts = sorted(
                (r["ef"], r["run"]["recall"], r["run"]["qps"])
                for r in recs
                if r["section"] == "ef" and r["n"] == n and r["filter"] == filt
            )
            if pts:
                ax.plot([p[1] for p in pts], [p[2] for p in pts], style, label=f"vectorgate {n:,} rows, {filt}")
                for ef, rec, qps in pts if filt == "no filter" else []:
                    ax.annotate(f"ef {ef}", (rec, qps), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for r in recs:
        if r["section"] == "sai" and r["clients"] == 1 and r["filter"] in ("no filter", "1% pass"):
            ax.plot([r["run"]["recall"]], [r["run"]["qps"]], "x", markersize=9,
                    label=f"Cassandra SAI {r['n']:,} rows, {r['filter']}")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (one client)")
    ax.set_yscale("log")
    written.append(finish(fig, ax, res, "Recall against QPS, k = 10", f"{out}/recall_qps.png"))

    # Latency (p50, one client, k = 10) against data size: index, exact scan, direct.
    fig, ax = plt.subplots(figsize=(8, 5.5))
    series = (
        ("latency", "no filter", "-o", "proxy, index, no filter"),
        ("latency", "1% pass", "-s", "proxy, index, 1% pass"),
        ("direct", "no filter", ":o", "direct, index, no filter"),
        ("exact", "no filter", "--^", "proxy, exact row scan, no filter"),
        ("exact", "1% pass", "--v", "proxy, exact row scan, 1% pass"),
        ("sai", "no filter", "-.x", "Cassandra SAI, no filter"),
        ("cassandra-proxy", "no filter", "-.d", "proxy, rows in Cassandra, no filter"),
    )
    for section, filt, style, label in series:
        pts = sorted(
            (r["n"], r["run"]["p50_ms"])
            for r in recs
            if r["section"] == section and r["filter"] == filt and r["k"] == 10 and r["clients"] == 1 and r["ef"] is None
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("p50 latency, ms (one client, k = 10)")
    written.append(finish(fig, ax, res, "Latency against data size", f"{out}/latency_size.png"))
    print("\n".join(written))


if __name__ == "__main__":
    if sys.argv[1] == "digits":
        digits(sys.argv[2])
    else:
        plots(sys.argv[2], sys.argv[3])
