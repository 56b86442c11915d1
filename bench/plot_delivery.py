#!/usr/bin/env python3
"""Reads bench_delivery's JSON (--benchmark_out) and draws the delivery chart.

    plot_delivery.py [JSON] [PNG] [--tables] [--warm WARM_JSON] [--time auto|cpu_time|real_time]

Writes PNG (default delivery.png next to the JSON): median ns per message for every
scenario and peer, one panel per group (single-thread batch, signal-style emit, two
threads). With --tables it also prints Markdown tables with the ratios. Time: by default
CPU time for the single-thread groups and real time for the threaded one (whose CPU time
is the whole process, both threads). Needs python3-matplotlib (Debian).
"""

import argparse
import json
import os
import sys

LABELS = {  # (group, shape, peer) -> label; anything else is shown as shape/peer
    ("batch", "direct", "warren"): "warren, direct",
    ("batch", "topic_cached", "warren"): "warren, topic (cache hit)",
    ("batch", "topic_uncached", "warren"): "warren, topic (cache off)",
    ("batch", "fanout10", "warren"): "warren, fanout to 10 (per message)",
    ("batch", "queue", "std_deque_function"): "std::deque + std::function (floor)",
    ("batch", "queue", "std_deque_10_functions"): "std::deque + 10 std::functions (fanout's floor)",
    ("batch", "queue", "moodycamel_concurrent"): "moodycamel ConcurrentQueue",
    ("batch", "queue", "moodycamel_concurrent_bulk"): "moodycamel ConcurrentQueue, bulk",
    ("batch", "queue", "moodycamel_rw"): "moodycamel ReaderWriterQueue",
    ("emit", "sync", "warren_fanout"): "warren, fanout + dispatch",
    ("emit", "sync", "warren_fanout_synchronous"): "warren, fanout, synchronous subscribers",
    ("emit", "sync", "boost_signals2"): "Boost.Signals2",
    ("emit", "sync", "boost_signals2_dummy_mutex"): "Boost.Signals2, dummy_mutex",
    ("emit", "sync", "sigcxx"): "libsigc++",
    ("emit", "sync", "std_function_vector"): "vector<std::function>",
    ("threads", "poll", "warren_direct_try_get"): "warren, direct, try_get",
    ("threads", "poll", "warren_default_try_get"): "warren, default exchange, try_get",
    ("threads", "poll", "warren_direct_dispatch"): "warren, direct, dispatch",
    ("threads", "poll", "warren_default_dispatch"): "warren, default exchange, dispatch",
    ("threads", "poll", "moodycamel_concurrent"): "moodycamel ConcurrentQueue",
    ("threads", "poll", "moodycamel_concurrent_bulk"): "moodycamel ConcurrentQueue, bulk of 64",
    ("threads", "poll", "warren_direct_publish_many_try_get_many"): "warren, direct, batches of 64 both sides",
    ("threads", "poll", "moodycamel_rw"): "moodycamel ReaderWriterQueue",
    ("threads", "wait", "warren_direct_try_get_for"): "warren, direct, try_get_for",
    ("threads", "wait", "warren_default_try_get_for"): "warren, default exchange, try_get_for",
    ("threads", "wait", "moodycamel_blocking_concurrent"): "moodycamel BlockingConcurrentQueue",
    ("threads", "wait", "moodycamel_blocking_rw"): "moodycamel BlockingReaderWriterQueue",
    ("threads", "wait", "mutex_deque_condvar"): "std::mutex + deque + condvar",
    ("threads", "4x4", "warren_direct_handle_try_get"): "warren, 4 to 4, direct, queue handles",
    ("threads", "4x4", "moodycamel_concurrent"): "moodycamel ConcurrentQueue, 4 to 4",
    ("threads", "4x4", "moodycamel_concurrent_bulk"): "moodycamel ConcurrentQueue, 4 to 4, bulk of 64",
    ("threads", "4x4", "warren_direct_publish_many_try_get_many"): "warren, 4 to 4, batches of 64 both sides",
    ("threads", "poll", "warren_direct_handle_try_get_many"): "warren, direct, handle, batches of 64",
    ("threads", "poll", "warren_direct_handle_try_get"): "warren, direct, handle, try_get",
}
UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load(path):
    """[(group, shape, peer, arg, entry)] in the run's order: the median aggregates, or
    the single runs of a run without repetitions."""
    with open(path) as f:
        data = json.load(f)
    out = []
    seen = set()
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if b.get("error_occurred"):
            print(f"skipping {b['name']}: {b.get('error_message')}", file=sys.stderr)
            continue
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 4:
            continue
        key = tuple(parts[:3]) + (int(parts[3]),)
        if key in seen:  # repetitions without aggregates: keep the first
            continue
        seen.add(key)
        out.append(key + (b,))
    return data.get("context", {}), out


def field_for(group, time):
    if time != "auto":
        return time
    return "real_time" if group == "threads" else "cpu_time"


def ns_per_message(group, arg, entry, time):
    """ns per message (batch, threads) or per emit (emit)."""
    per_iteration = 1 if group == "emit" else arg
    return entry[field_for(group, time)] * UNIT[entry.get("time_unit", "ns")] / per_iteration


def label(group, shape, peer):
    return LABELS.get((group, shape, peer), f"{shape}/{peer}")


def is_warren(peer):
    return peer.startswith("warren")


def fmt_ns(x):
    if x is None:
        return "-"
    if x >= 10_000:
        return f"{x / 1000:,.1f} µs"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_ratio(x):
    if x is None:
        return "-"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def fmt_rate(per_second):
    return f"{per_second / 1e6:.2f} M/s" if per_second >= 1e6 else f"{per_second / 1e3:,.0f} k/s"


def plot(rows, time, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    batch = [r for r in rows if r[0] == "batch"]
    if batch:
        n = batch[0][3]
        panels.append((f"Single thread, batches of {n}: ns per message ({field_for('batch', time).replace('_', ' ')})",
                       [(label(*r[:3]), ns_per_message("batch", r[3], r[4], time), is_warren(r[2])) for r in batch]))
    emit = [r for r in rows if r[0] == "emit"]
    if emit:
        bars = []
        for k in sorted({r[3] for r in emit}):
            bars += [(f"{label(*r[:3])}, {k} subscriber{'s' if k != 1 else ''}",
                      ns_per_message("emit", k, r[4], time), is_warren(r[2])) for r in emit if r[3] == k]
        panels.append((f"Signal-style emit, one message to every subscriber: ns per emit "
                       f"({field_for('emit', time).replace('_', ' ')})", bars))
    threads = [r for r in rows if r[0] == "threads"]
    if threads:
        m = threads[0][3]
        panels.append((f"Across threads, {m:,} messages, 1 producer to 1 consumer (4x4: 4 to 4): ns per message "
                       f"({field_for('threads', time).replace('_', ' ')})",
                       [(f"{label(*r[:3])} ({r[1]})", ns_per_message("threads", r[3], r[4], time), is_warren(r[2]))
                        for r in threads]))
    if not panels:
        sys.exit("no benchmarks in the JSON")

    heights = [0.6 + 0.32 * len(bars) for _, bars in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 0.4),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, bars) in zip(axes[:, 0], panels):
        y = list(range(len(bars)))
        values = [b[1] for b in bars]
        colors = ["tab:blue" if b[2] else "tab:gray" for b in bars]
        ax.barh(y, values, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels([b[0] for b in bars], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 4)
        for yi, v in zip(y, values):
            ax.text(v * 1.08, yi, fmt_ns(v), va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("ns (log scale; median; lower is better; blue: warren)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}", file=sys.stderr)


def tables(context, rows, warm, time):
    print(f"<!-- generated by bench/plot_delivery.py --tables from the JSON; medians; time: {time} -->")
    print(f"Load average when the run started: {context.get('load_avg')}\n")

    batch = [r for r in rows if r[0] == "batch"]
    if batch:
        floor = next((ns_per_message("batch", r[3], r[4], time) for r in batch if r[2] == "std_deque_function"), None)
        print(f"Single thread, batches of {batch[0][3]}: ns per message ({field_for('batch', time)})\n")
        print("| scenario | ns per message | deliveries per message | × floor |")
        print("|---|---:|---:|---:|")
        for g, shape, peer, arg, e in batch:
            v = ns_per_message(g, arg, e, time)
            print(f"| {label(g, shape, peer)} | {fmt_ns(v)} | {e.get('deliveries_per_message', 1):.0f} | "
                  f"{fmt_ratio(v / floor) if floor else '-'} |")
        print()

    emit = [r for r in rows if r[0] == "emit"]
    if emit:
        ks = sorted({r[3] for r in emit})
        peers = list(dict.fromkeys(r[2] for r in emit))
        value = {(r[2], r[3]): ns_per_message("emit", r[3], r[4], time) for r in emit}
        print(f"Signal-style emit: ns per emit ({field_for('emit', time)})\n")
        print("| peer | " + " | ".join(f"{k} subscriber{'s' if k != 1 else ''}" for k in ks) + " | "
              + " | ".join(f"warren ÷ peer, {k}" for k in ks) + " |")
        print("|---|" + "---:|" * (2 * len(ks)))
        for peer in peers:
            cells = [fmt_ns(value.get((peer, k))) for k in ks]
            ratios = []
            for k in ks:
                w, p = value.get(("warren_fanout", k)), value.get((peer, k))
                ratios.append(fmt_ratio(w / p) if w and p else "-")
            print(f"| {label('emit', 'sync', peer)} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        print()

    threads = [r for r in rows if r[0] == "threads"]
    if threads:
        warm_ns = {(r[1], r[2]): ns_per_message("threads", r[3], r[4], time) for r in warm if r[0] == "threads"}
        print(f"Two threads, {threads[0][3]:,} messages per iteration: {field_for('threads', time)} per message; "
              "CPU = both threads\n")
        head = "| consumer | peer | messages/s | ns per message | CPU ns per message | warren direct ÷ peer |"
        if warm_ns:
            head += " ns per message, warm heap |"
        print(head)
        print("|---|---|---:|---:|---:|---:|" + ("---:|" if warm_ns else ""))
        reference = {}
        for g, shape, peer, arg, e in threads:
            if peer.startswith("warren_direct"):
                reference.setdefault(shape, ns_per_message(g, arg, e, time))
        for g, shape, peer, arg, e in threads:
            v = ns_per_message(g, arg, e, time)
            cpu = e["cpu_time"] * UNIT[e.get("time_unit", "ns")] / arg
            ref = reference.get(shape)
            line = (f"| {shape} | {label(g, shape, peer)} | {fmt_rate(1e9 / v)} | {fmt_ns(v)} | {fmt_ns(cpu)} | "
                    f"{fmt_ratio(ref / v) if ref else '-'} |")
            if warm_ns:
                line += f" {fmt_ns(warm_ns.get((shape, peer)))} |"
            print(line)
        print()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_json = os.path.join(here, "..", "docs", "bench", "delivery.json")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="?", default=default_json)
    p.add_argument("png", nargs="?")
    p.add_argument("--tables", action="store_true", help="print the Markdown tables too")
    p.add_argument("--time", default="auto", choices=["auto", "cpu_time", "real_time"])
    p.add_argument("--warm", help="the warm-heap JSON (default: delivery_warm_heap.json beside JSON)")
    args = p.parse_args()
    context, rows = load(args.json)
    png = args.png or os.path.join(os.path.dirname(os.path.abspath(args.json)), "delivery.png")
    plot(rows, args.time, png)
    if args.tables:
        warm_path = args.warm or os.path.join(os.path.dirname(os.path.abspath(args.json)), "delivery_warm_heap.json")
        warm = load(warm_path)[1] if os.path.exists(warm_path) else []
        tables(context, rows, warm, args.time)


if __name__ == "__main__":
    main()
