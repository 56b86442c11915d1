#!/usr/bin/env python3
"""Prints the tables of docs/benchmarks.md, "Bindings", from bench_bindings' JSON output.

    python3 bench/bindings_table.py docs/bench/bindings.json [docs/bench/bindings_before.json]

Each figure is ns per binding (or per queue): the median over the repetitions of the
benchmark's CPU time for the batch, divided by the batch's size (1e9 / items_per_second).
"""
import json
import sys

TYPES = ["direct", "topic", "fanout", "headers"]


def medians(path):
    """{(benchmark, n, type): ns per item} from the median aggregates of a JSON file."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name, *args = b["run_name"].split("/")
        n = int(args[0])
        kind = b.get("label", "")
        if name not in ("floor_set", "queues_declare_delete") and len(args) > 1:
            kind = TYPES[int(args[1])]
        out[(name, n, kind)] = 1e9 / b["items_per_second"]
    return out


def figure(table, key):
    v = table.get(key)
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def main():
    after = medians(sys.argv[1])
    before = medians(sys.argv[2]) if len(sys.argv) > 2 else {}
    rows = [
        ("bind N keys of one queue", "keys_bind", [2000, 20000, 200000], TYPES),
        ("unbind them, in another order", "keys_unbind", [2000, 20000, 200000], TYPES),
        ("delete the queue that holds them", "keys_delete_queue", [2000, 20000, 200000], TYPES),
        ("bind N queues under one key", "queues_bind", [2000, 20000], TYPES),
        ("unbind them, in another order", "queues_unbind", [2000, 20000], TYPES),
        ("declare N queues, bind each to a fanout, delete them", "queues_declare_delete", [2000, 20000], [""]),
        ("floor: std::unordered_set insert of N keys", "floor_set", [2000, 20000, 200000], ["insert"]),
        ("floor: std::unordered_set erase of N keys", "floor_set", [2000, 20000, 200000], ["erase"]),
    ]
    print("| workload | exchange | N = 2,000 | 20,000 | 200,000 | before, 2,000 | before, 20,000 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for title, name, sizes, kinds in rows:
        for kind in kinds:
            cells = [figure(after, (name, n, kind)) if n in sizes else "" for n in (2000, 20000, 200000)]
            old = [figure(before, (name, n, kind)) if before else "" for n in (2000, 20000)]
            shown = kind if kind not in ("insert", "erase") else ""
            print(f"| {title} | {shown} | " + " | ".join(cells) + " | " + " | ".join(old) + " |")


if __name__ == "__main__":
    main()
