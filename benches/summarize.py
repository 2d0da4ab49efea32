#!/usr/bin/env python3
"""Prints the table of medians and ratios from the last benchmark run (BENCHMARKS.md).

Reads criterion's `<target>/criterion/<group>/<function>/new/{benchmark,estimates}.json`
(medians), `<target>/criterion/sqlalchemy.json` (benches/sqlalchemy/bench.py),
`<target>/criterion/uow-allocations.json` (the W5 bench) and `<target>/criterion/uow-memory.json`
(the bulk bench's heap counts), where `<target>` is $CARGO_TARGET_DIR or `target`. Standard
library only.

    python3 benches/summarize.py [--markdown FILE] [--svg FILE] [--backend NAME ...]

`--markdown` also writes the tables as Markdown, `--svg` the plot of W1 and W2, `--backend`
limits the tables to those backends (`sqlite`, `postgres`, `postgres_rtt1ms`). Groups named
`<workload>_<backend>_rtt<RTT>` (benches/latency.sh) are the runs over a link with that
round trip, tabled as a backend of their own. The groups of benches/async_workloads.rs
(`w1_async_insert_100_postgres`, ...) are tabled apart, as "async": their medians, and per
workload uow_async / the hand-written variant with the same guarantees (one transaction), / the
fastest lone statement, / the diesel-async loop, / uow_sync.
"""

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (group prefix, title, [(function id, label)]); the group name ends with `_<backend>`.
GROUPS = [
    ("w1_insert_100", "W1: commit 100 new entities", [
        ("uow", "uow: register_new each + commit (INSERT .. RETURNING id)"),
        ("diesel_multi_row", "Diesel multi-row INSERT (ids not read)"),
        ("diesel_multi_row_returning", "Diesel multi-row INSERT .. RETURNING id"),
        ("diesel_row_by_row", "Diesel one INSERT per row, one transaction"),
        ("raw_sqlite", "raw SQLite C API, prepared statement loop"),
        ("raw_sqlite_returning", "raw SQLite C API, multi-row INSERT .. RETURNING id (uow's statements)"),
        ("sqlalchemy", "SQLAlchemy ORM add_all + commit"),
    ]),
    ("w1_insert_10000", "W1: commit 10,000 new entities", None),
    ("w2_update_10000", "W2: load 10,000, change one field each, commit", [
        ("uow", "uow: load, attach_all, get_mut x10,000, commit"),
        ("diesel_update_loop", "Diesel: load, per-row UPDATE loop in one transaction"),
        ("diesel_update_from_values", "Diesel: load, one WITH v AS (VALUES ..) UPDATE .. FROM v, values bound"),
        ("diesel_update_from_unnest", "Diesel: load, one UPDATE .. FROM unnest(bound arrays)"),
        ("sqlalchemy", "SQLAlchemy ORM: load, change, commit"),
    ]),
    ("w2_commit_only_10000", "W2': the commit alone (10,000 changed entities)", [
        ("uow", "uow: commit"),
        ("diesel_update_loop", "Diesel per-row UPDATE loop in one transaction"),
        ("diesel_update_from_values", "Diesel: one WITH v AS (VALUES ..) UPDATE .. FROM v, values bound"),
        ("diesel_update_from_unnest", "Diesel: one UPDATE .. FROM unnest(bound arrays)"),
        ("raw_sqlite", "raw SQLite C API, prepared UPDATE loop"),
        ("sqlalchemy", "SQLAlchemy ORM: commit"),
    ]),
    ("w3_touched_100", "W3: 100 touched among N tracked, change + commit", [
        ("uow_10000_tracked", "uow holding 10,000, 100 changed"),
        ("uow_100_tracked", "uow holding only those 100"),
    ]),
    ("w4_clean_commit", "W4: commit with nothing changed", [
        ("uow_10000_clean", "uow holding 10,000 clean entities"),
        ("uow_empty", "uow holding nothing"),
    ]),
    ("w5_field_change", "W5: one field change", [
        ("plain_assignment", "plain struct: item.qty += 1"),
        ("uow_get_mut", "uow.get_mut(&h)?.qty += 1 (steady state)"),
        ("uow_entities_mut", "items.get_mut(&h)?.qty += 1, items = uow.entities_mut::<Item>() (steady state)"),
        ("uow_get_mut_first_after_commit", "uow.get_mut(&h)?.qty += 1, first after a commit"),
        ("plain_loop", "plain Vec of 10,000: for item in &mut items { item.qty += 1 }, per change"),
        ("uow_entities_mut_loop", "for h in &handles { items.get_mut(h)?.qty += 1 } over 10,000 held (steady state), per change"),
        ("uow_iter_mut", "for item in uow.entities_mut::<Item>().iter_mut() { item.qty += 1 } over 10,000 held (steady state), per change"),
    ]),
    ("w6_mixed", "W6: mixed commit on authors/books (120 INSERTs, 200 UPDATEs, 110 DELETEs)", [
        ("uow", "uow: register_new + set_parent, get_mut, register_removed, commit"),
        ("diesel", "Diesel: INSERT .. RETURNING x2, UPDATE loop, DELETE .. IN x2"),
    ]),
    ("w7_aggregate", "W7: load an aggregate (1 root, 100 children, 1,000 grandchildren), change 30 members, commit", [
        ("uow", "uow: load::<Product>, get_mut + plain Rust on the tree, commit"),
        ("diesel_by_hand", "Diesel: a query per level, tree by hand, diff against a copy, UPDATE per row + INSERT + DELETE .. IN + version"),
    ]),
    ("outbox_commit_1000", "Outbox: 1,000 held items changed, one event each, one commit", [
        ("events_in_memory", "uow: record_event (outbox off)"),
        ("outbox", "uow: record_outbox_event (outbox on: + one INSERT of 1,000 rows)"),
        ("diesel_by_hand", "Diesel: UPDATE per row + outbox rows (serde_json) in one multi-row INSERT"),
    ]),
    ("outbox_relay_rabbitmq", "Relay: 1,000 outbox rows to RabbitMQ, batches of 100, confirms awaited", [
        ("relay", "uow: Relay::relay_once until empty"),
    ]),
    ("outbox_relay_nats", "Relay: 1,000 outbox rows to NATS JetStream, batches of 100, acks awaited", [
        ("relay", "uow: Relay::relay_once until empty"),
    ]),
    ("bulk_100000", "Bulk: 100,000 new customers in 1,000-row chunks", [
        ("scope_flush_per_chunk", "uow: one scope, register_new + scope.flush() per chunk"),
        ("commit_per_chunk", "uow: register_new + commit per chunk"),
        ("diesel_multi_row_returning", "Diesel: INSERT .. RETURNING id per chunk, one transaction"),
    ]),
]
GROUPS[1] = (GROUPS[1][0], GROUPS[1][1], GROUPS[0][2])



def on_postgres(backend):
    return backend.startswith("postgres")


def over_link(backend):
    return "_rtt" in backend


# (id, description, numerator (group, fn), denominator (group, fn) or None, comparison, bound
# [, backends]) ratio = numerator / denominator; "le": ratio <= bound is met; "ge": ratio >=
# bound is met; with no denominator the numerator's median (ns) is compared with `bound` (ns).
# `backends`, where given, says on which backends the target applies.
TARGETS = [
    ("W1 n=100 vs Diesel multi-row", ("w1_insert_100", "uow"), ("w1_insert_100", "diesel_multi_row"), "le", 1.15),
    ("W1 n=10,000 vs Diesel multi-row", ("w1_insert_10000", "uow"), ("w1_insert_10000", "diesel_multi_row"), "le", 1.15),
    ("W1 n=100 vs Diesel multi-row RETURNING id (same job)", ("w1_insert_100", "uow"), ("w1_insert_100", "diesel_multi_row_returning"), "info", None),
    ("W1 n=10,000 vs Diesel multi-row RETURNING id (same job)", ("w1_insert_10000", "uow"), ("w1_insert_10000", "diesel_multi_row_returning"), "info", None),
    ("W1 n=100 vs raw SQLite", ("w1_insert_100", "uow"), ("w1_insert_100", "raw_sqlite"), "le", 2.0),
    ("W1 n=10,000 vs raw SQLite", ("w1_insert_10000", "uow"), ("w1_insert_10000", "raw_sqlite"), "le", 2.0),
    ("W1 n=100 vs raw SQLite sending uow's statements", ("w1_insert_100", "uow"), ("w1_insert_100", "raw_sqlite_returning"), "info", None),
    ("W1 n=10,000 vs raw SQLite sending uow's statements", ("w1_insert_10000", "uow"), ("w1_insert_10000", "raw_sqlite_returning"), "info", None),
    ("W2 vs Diesel UPDATE loop", ("w2_update_10000", "uow"), ("w2_update_10000", "diesel_update_loop"), "le", 1.2),
    ("W2' (commit only) vs Diesel UPDATE loop", ("w2_commit_only_10000", "uow"), ("w2_commit_only_10000", "diesel_update_loop"), "le", 1.2),
    ("W2' (commit only) vs raw SQLite UPDATE loop", ("w2_commit_only_10000", "uow"), ("w2_commit_only_10000", "raw_sqlite"), "info", None),
    ("W3 10,000 tracked vs the 100 alone", ("w3_touched_100", "uow_10000_tracked"), ("w3_touched_100", "uow_100_tracked"), "le", 1.5),
    ("W4 clean commit, 10,000 tracked (absolute)", ("w4_clean_commit", "uow_10000_clean"), None, "lt", 50_000),
    ("W5 tracked change vs plain assignment", ("w5_field_change", "uow_get_mut"), ("w5_field_change", "plain_assignment"), "le", 2.0),
    ("W5 typed view (entities_mut) vs plain assignment", ("w5_field_change", "uow_entities_mut"), ("w5_field_change", "plain_assignment"), "le", 2.0),
    ("W5 every entity (iter_mut), per change, vs plain assignment", ("w5_field_change", "uow_iter_mut"), ("w5_field_change", "plain_assignment"), "le", 2.0),
    ("W5 every entity (iter_mut) vs the plain Vec loop (same 10,000 changes)", ("w5_field_change", "uow_iter_mut"), ("w5_field_change", "plain_loop"), "info", None),
    ("W5 typed view get_mut per handle vs the plain Vec loop (same 10,000 changes)", ("w5_field_change", "uow_entities_mut_loop"), ("w5_field_change", "plain_loop"), "info", None),
    ("W1 n=100: SQLAlchemy / uow", ("w1_insert_100", "sqlalchemy"), ("w1_insert_100", "uow"), "ge", 20.0),
    ("W1 n=10,000: SQLAlchemy / uow", ("w1_insert_10000", "sqlalchemy"), ("w1_insert_10000", "uow"), "ge", 20.0),
    ("W2: SQLAlchemy / uow", ("w2_update_10000", "sqlalchemy"), ("w2_update_10000", "uow"), "ge", 20.0),
    ("W6 vs hand-written Diesel (no target)", ("w6_mixed", "uow"), ("w6_mixed", "diesel"), "info", None),
    ("W2: Diesel per-row UPDATE loop / uow", ("w2_update_10000", "diesel_update_loop"), ("w2_update_10000", "uow"), "ge", 10.0, on_postgres),
    ("W2 vs Diesel UPDATE .. FROM (VALUES ..) by hand", ("w2_update_10000", "uow"), ("w2_update_10000", "diesel_update_from_values"), "le", 1.2, on_postgres),
    ("W2' (commit only) vs Diesel UPDATE .. FROM (VALUES ..)", ("w2_commit_only_10000", "uow"), ("w2_commit_only_10000", "diesel_update_from_values"), "info", None),
    ("W2 vs Diesel UPDATE .. FROM unnest (arrays, fastest by hand)", ("w2_update_10000", "uow"), ("w2_update_10000", "diesel_update_from_unnest"), "info", None, on_postgres),
    ("W2' (commit only) vs Diesel UPDATE .. FROM unnest", ("w2_commit_only_10000", "uow"), ("w2_commit_only_10000", "diesel_update_from_unnest"), "info", None, on_postgres),
    ("W2 over the link (absolute)", ("w2_update_10000", "uow"), None, "lt", 100_000_000, over_link),
    ("W7 aggregate vs Diesel by hand", ("w7_aggregate", "uow"), ("w7_aggregate", "diesel_by_hand"), "le", 1.2),
    ("Outbox on vs off (1,000 changes, one event each)", ("outbox_commit_1000", "outbox"), ("outbox_commit_1000", "events_in_memory"), "info", None),
    ("Outbox on vs Diesel by hand (same job)", ("outbox_commit_1000", "outbox"), ("outbox_commit_1000", "diesel_by_hand"), "info", None),
    ("Bulk: scope vs commit per chunk", ("bulk_100000", "scope_flush_per_chunk"), ("bulk_100000", "commit_per_chunk"), "le", 1.1),
    ("Bulk: commit per chunk vs Diesel", ("bulk_100000", "commit_per_chunk"), ("bulk_100000", "diesel_multi_row_returning"), "info", None),
]

# The async bench (benches/async_workloads.rs, `--features async,postgres`): groups named
# `<prefix>_<backend>`, tabled apart ("async"): (group prefix, title, [(function id, label)]).
ASYNC_GROUPS = [
    ("w1_async_insert_100", "W1: commit 100 new entities", [
        ("uow_async", "uow_async: AsyncUnitOfWork, register_new each + commit"),
        ("diesel_async_multi_row", "diesel-async multi-row INSERT (ids not read)"),
        ("diesel_async_multi_row_returning", "diesel-async multi-row INSERT .. RETURNING id"),
        ("diesel_async_returning_in_transaction", "diesel-async multi-row INSERT .. RETURNING id in conn.transaction"),
        ("diesel_async_row_by_row", "diesel-async one INSERT per row, one transaction"),
        ("uow_sync", "uow_sync: UnitOfWork on PgConnection, the same job"),
    ]),
    ("w1_async_insert_10000", "W1: commit 10,000 new entities", None),
    ("w2_async_update_10000", "W2: load 10,000, change one field each, commit", [
        ("uow_async", "uow_async: load, attach_all, get_mut x10,000, commit"),
        ("diesel_async_update_loop", "diesel-async: load, per-row UPDATE loop in one transaction"),
        ("diesel_async_update_from_unnest", "diesel-async: load, one UPDATE .. FROM unnest(bound arrays)"),
        ("diesel_async_update_from_unnest_in_transaction", "diesel-async: the same UPDATE in conn.transaction, every row checked matched"),
        ("uow_sync", "uow_sync: UnitOfWork on PgConnection, the same job"),
    ]),
    ("w6_async_mixed", "W6: mixed commit on authors/books (120 INSERTs, 200 UPDATEs, 110 DELETEs)", [
        ("uow_async", "uow_async: register_new + set_parent, get_mut, register_removed, commit"),
        ("diesel_async", "diesel-async: INSERT .. RETURNING x2, UPDATE loop, DELETE .. IN x2"),
        ("uow_sync", "uow_sync: UnitOfWork on PgConnection, the same job"),
    ]),
]
ASYNC_GROUPS[1] = (ASYNC_GROUPS[1][0], ASYNC_GROUPS[1][1], ASYNC_GROUPS[0][2])

# (group prefix, workload, the hand-written variant doing the same job with the same
# guarantees (one transaction: all or nothing, and a future dropped half way commits nothing),
# bound on uow_async / it or None, the lone-statement variants (fastest of them: atomic, but
# a future dropped after the statement was sent leaves it committed), the per-row loop, bound
# on uow_async / loop or None). Issue 14's targets: W1 and W6 <= 1.1x of the same job by hand,
# W2 <= 1.0x of the ordinary hand-written loop.
ASYNC_RATIOS = [
    ("w1_async_insert_100", "W1 n=100", "diesel_async_returning_in_transaction", 1.1, ["diesel_async_multi_row", "diesel_async_multi_row_returning"], "diesel_async_row_by_row", None),
    ("w1_async_insert_10000", "W1 n=10,000", "diesel_async_returning_in_transaction", 1.1, ["diesel_async_multi_row", "diesel_async_multi_row_returning"], "diesel_async_row_by_row", None),
    ("w2_async_update_10000", "W2", "diesel_async_update_from_unnest_in_transaction", None, ["diesel_async_update_from_unnest"], "diesel_async_update_loop", 1.0),
    ("w6_async_mixed", "W6", "diesel_async", 1.1, [], "diesel_async", None),
]


# (key in uow-memory.json, description, bound in bytes or None): the bulk bench's heap counts.
MEMORY = [
    ("held_overhead_bytes", "heap per held entity beyond its row (attach_all of 100,000 loaded rows)", 64),
    ("row_bytes", "heap of one loaded row in a Vec (Diesel)", None),
    ("peak_commit_per_chunk_bytes", "bulk peak heap per row beyond the input: commit per chunk", None),
    ("peak_scope_bytes", "bulk peak heap per row beyond the input: one scope", None),
    ("peak_diesel_bytes", "bulk peak heap per row beyond the input: Diesel", None),
    ("held_commit_per_chunk_bytes", "bulk heap per row held after, beyond the input: commit per chunk", None),
    ("held_scope_bytes", "bulk heap per row held after, beyond the input: one scope", None),
    ("held_diesel_bytes", "bulk heap per row held after, beyond the input: Diesel", None),
]

# Backends in the order of the tables; runs over a delayed link follow, in name order.
BACKENDS = ["sqlite", "postgres"]
TITLES = {"sqlite": "SQLite (in memory)", "postgres": "PostgreSQL"}


def target_dir():
    target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    return target if target.is_absolute() else ROOT / target


def load_medians(criterion):
    """{(group_id, function_id): median ns} from criterion's output."""
    medians = {}
    if not criterion.is_dir():
        return medians
    for bench in criterion.glob("*/*/new/benchmark.json"):
        estimates = bench.parent / "estimates.json"
        if not estimates.exists():
            continue
        meta = json.loads(bench.read_text())
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        medians[(meta["group_id"], meta["function_id"])] = median
    return medians


def split_group(group_id):
    """('w1_insert_100', 'sqlite') from 'w1_insert_100_sqlite', ('w2_update_10000',
    'postgres_rtt1ms') from 'w2_update_10000_postgres_rtt1ms'; backendless groups -> 'sqlite'."""
    for backend in BACKENDS:
        m = re.fullmatch(rf"(.+)_({backend}(?:_rtt[0-9a-zA-Z]+)?)", group_id)
        if m:
            return m.group(1), m.group(2)
    return group_id, "sqlite"


def backends_of(medians):
    """Every backend with results: the plain ones first, then the runs over delayed links."""
    found = {backend for backend, _, _ in medians}
    return [b for b in BACKENDS if b in found] + sorted(found - set(BACKENDS))


def title(backend):
    """'PostgreSQL, 1 ms round trip' for 'postgres_rtt1ms'."""
    name, _, rtt = backend.partition("_rtt")
    base = TITLES.get(name, name)
    if not rtt:
        return base
    m = re.fullmatch(r"([0-9.]+)([a-z]+)", rtt)
    return f"{base}, {m.group(1)} {m.group(2)} round trip" if m else f"{base}, {rtt} round trip"


def fmt_time(ns):
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns:.2f} ns" if ns < 10 else f"{ns:.1f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


def fmt_versus(r):
    """uow's time divided by a variant's, in words."""
    if r is None:
        return "-"
    if r >= 1:
        return f"{fmt_ratio(r)} slower"
    return f"{fmt_ratio(1 / r)} faster"


def collect():
    criterion = target_dir() / "criterion"
    raw = load_medians(criterion)
    medians = {}  # (backend, group prefix, fn) -> ns
    for (group_id, fn), ns in raw.items():
        prefix, backend = split_group(group_id)
        medians[(backend, prefix, fn)] = ns
    sqlalchemy = None
    path = criterion / "sqlalchemy.json"
    if path.exists():
        sqlalchemy = json.loads(path.read_text())
        for prefix, result in sqlalchemy["results"].items():
            medians[("sqlite", prefix, "sqlalchemy")] = result["median_ns"]
    allocations = None
    path = criterion / "uow-allocations.json"
    if path.exists():
        allocations = json.loads(path.read_text())
    memory = None
    path = criterion / "uow-memory.json"
    if path.exists():
        memory = json.loads(path.read_text())
    return medians, sqlalchemy, allocations, memory


def memory_rows(memory):
    """Rows of the heap table: (what, bytes, goal, status)."""
    out = []
    for key, what, bound in MEMORY:
        if key not in memory:
            continue
        value = memory[key]
        goal = f"<= {bound} B" if bound is not None else "-"
        status = "-" if bound is None else ("met" if value <= bound else "MISSED")
        out.append((what, f"{value:.1f} B", goal, status))
    return out


def rows_for(medians, backend):
    """Table rows: (title, label, median, 'uow / this' ratio) per group."""
    out = []
    for prefix, title, variants in GROUPS:
        present = [(fn, label) for fn, label in variants if (backend, prefix, fn) in medians]
        if not present:
            continue
        reference = medians.get((backend, prefix, present[0][0]))
        for fn, label in present:
            ns = medians[(backend, prefix, fn)]
            ratio = reference / ns if reference and fn != present[0][0] else None
            out.append((title, label, ns, ratio))
    return out


def target_rows(medians, backend):
    out = []
    for name, num, den, op, bound, *applies in TARGETS:
        if applies and not applies[0](backend):
            continue
        n = medians.get((backend, *num))
        d = medians.get((backend, *den)) if den else None
        if n is None or (den and d is None):
            continue
        if den is None:
            value, shown, goal = n, fmt_time(n), f"< {fmt_time(bound)}"
            met = n < bound
        else:
            value = n / d
            shown = fmt_ratio(value)
            goal = {"le": f"<= {bound}x", "ge": f">= {bound}x", "info": "-"}[op]
            met = {"le": value <= (bound or 0), "ge": value >= (bound or 0), "info": None}[op]
        out.append((name, shown, goal, {True: "met", False: "MISSED", None: "-"}[met]))
    return out


def async_rows(medians, backend):
    """The async bench's medians: (title, label, median, uow_async / this) per group."""
    out = []
    for prefix, title, variants in ASYNC_GROUPS:
        reference = medians.get((backend, prefix, "uow_async"))
        for fn, label in variants:
            ns = medians.get((backend, prefix, fn))
            if ns is None:
                continue
            ratio = reference / ns if reference and fn != "uow_async" else None
            out.append((title, label, ns, ratio))
    return out


def async_ratio_rows(medians, backend):
    """Per workload: uow_async / the same job by hand (same guarantees), / the fastest lone
    statement, / the diesel-async loop, / uow_sync, each with its goal where there is one."""
    def goal(value, bound):
        if value is None or bound is None:
            return "-"
        return f"<= {bound}x: " + ("met" if value <= bound else "MISSED")

    def ratio(a, b):
        return a / b if a and b else None

    out = []
    for prefix, name, same_job, same_bound, lone_of, loop, loop_bound in ASYNC_RATIOS:
        uow = medians.get((backend, prefix, "uow_async"))
        if uow is None:
            continue
        lone = [(medians[(backend, prefix, fn)], fn) for fn in lone_of if (backend, prefix, fn) in medians]
        fastest_lone = min(lone) if lone else None
        r_same = ratio(uow, medians.get((backend, prefix, same_job)))
        r_lone = ratio(uow, fastest_lone[0]) if fastest_lone else None
        r_loop = ratio(uow, medians.get((backend, prefix, loop)))
        r_sync = ratio(uow, medians.get((backend, prefix, "uow_sync")))
        out.append((
            name,
            fmt_ratio(r_same),
            goal(r_same, same_bound),
            f"{fmt_ratio(r_lone)} ({fastest_lone[1]})" if fastest_lone else "-",
            fmt_ratio(r_loop),
            goal(r_loop, loop_bound),
            fmt_ratio(r_sync),
        ))
    return out


def print_table(headers, rows, out):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)), file=out)


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{cpu}, {cores} cores, {mem} RAM, {platform.system()} {platform.release()}"


def svg_plot(medians, path):
    """W1 and W2 against the baselines on SQLite: one panel per workload, bars on a linear
    scale set by the slowest Rust variant; SQLAlchemy's bar is cut (its ratio is printed)."""
    panels = []  # (title, [(label, ns, kind)])
    for prefix, title, variants in GROUPS:
        if prefix not in ("w1_insert_100", "w1_insert_10000", "w2_update_10000", "w2_commit_only_10000"):
            continue
        entries = [
            (label, medians[("sqlite", prefix, fn)], fn)
            for fn, label in variants
            if ("sqlite", prefix, fn) in medians
        ]
        if entries:
            panels.append((title, entries))
    if not panels:
        return False

    left, label_w, bar_w, row_h, title_h = 20, 400, 430, 22, 30
    width = left + label_w + bar_w + 230
    height = 70 + sum(title_h + row_h * len(e) + 14 for _, e in panels) + 30
    colors = {"uow": "#d9480f", "sqlalchemy": "#868e96"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="16" font-weight="bold">uow against hand-written Diesel, '
        f'raw SQLite and SQLAlchemy (in-memory SQLite)</text>',
        f'<text x="{left}" y="44" font-size="11" fill="#444">Median time per run, linear scale per panel; '
        f'shorter is faster. After each time: uow\'s time divided by that variant\'s.</text>',
    ]
    y = 62
    for title, entries in panels:
        out.append(f'<text x="{left}" y="{y + 18}" font-size="13" font-weight="bold">{title}</text>')
        y += title_h
        uow = next((ns for _, ns, fn in entries if fn == "uow"), None)
        scale = max(ns for _, ns, fn in entries if fn != "sqlalchemy") * 1.05
        x0 = left + label_w
        out.append(f'<line x1="{x0}" y1="{y}" x2="{x0}" y2="{y + row_h * len(entries)}" stroke="#333"/>')
        for label, ns, fn in entries:
            color = colors.get(fn, "#1c7ed6")
            clipped = ns > scale
            w = bar_w * min(ns, scale) / scale
            out.append(f'<text x="{left}" y="{y + 15}">{label}</text>')
            out.append(f'<rect x="{x0}" y="{y + 3}" width="{max(1.0, w):.1f}" height="{row_h - 6}" fill="{color}"/>')
            if clipped:
                cut = x0 + w - 30
                out.append(f'<polygon points="{cut:.1f},{y + 1} {cut + 8:.1f},{y + 1} {cut + 2:.1f},{y + row_h - 1} {cut - 6:.1f},{y + row_h - 1}" fill="white"/>')
            text = fmt_time(ns)
            if uow and fn == "sqlalchemy":
                text += f"  ·  {fmt_ratio(ns / uow)} uow's time"
            elif uow and fn != "uow":
                text += f"  ·  uow ÷ this = {fmt_ratio(uow / ns)}"
            out.append(f'<text x="{x0 + w + 6:.1f}" y="{y + 15}">{text}</text>')
            y += row_h
        y += 14
    out.append(f'<text x="{left}" y="{height - 12}" font-size="10" fill="#666">orange: uow; blue: hand-written '
               f'Diesel and the raw SQLite C API; grey: SQLAlchemy ORM (bar cut). {machine()}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", help="also write the tables as Markdown to this file")
    parser.add_argument("--svg", help="also write the W1/W2 plot (SVG) to this file")
    parser.add_argument("--backend", action="append", help="only this backend's tables (repeatable)")
    args = parser.parse_args()

    medians, sqlalchemy, allocations, memory = collect()
    if not medians:
        print(f"no criterion results under {target_dir() / 'criterion'}; run benches/run.sh", file=sys.stderr)
        return 1
    md = [f"Machine: {machine()}", ""]
    if sqlalchemy:
        md += [f"SQLAlchemy {sqlalchemy['sqlalchemy']} on Python {sqlalchemy['python']} (SQLite {sqlalchemy['sqlite']}).", ""]
    for backend in backends_of(medians):
        if args.backend and backend not in args.backend:
            continue
        rows = rows_for(medians, backend)
        if not rows:
            continue
        table = [(t, l, fmt_time(ns), fmt_ratio(r), fmt_versus(r)) for t, l, ns, r in rows]
        headers = ["workload", "variant", "median", "uow ÷ variant", "so the first row is"]
        print(f"\n== {title(backend)}: medians (the first row of each workload is uow's reference) ==\n")
        print_table(headers, table, sys.stdout)
        md += [f"### Medians, {title(backend)}", "", markdown_table(headers, table), ""]
        targets = target_rows(medians, backend)
        if targets:
            headers = ["target", "measured", "goal", "status"]
            print(f"\n== {title(backend)}: targets ==\n")
            print_table(headers, targets, sys.stdout)
            md += [f"### Targets, {title(backend)}", "", markdown_table(headers, targets), ""]
    for backend in backends_of(medians):
        if args.backend and backend not in args.backend:
            continue
        rows = async_rows(medians, backend)
        if not rows:
            continue
        table = [(t, l, fmt_time(ns), fmt_ratio(r), fmt_versus(r)) for t, l, ns, r in rows]
        headers = ["workload", "variant", "median", "uow_async ÷ variant", "so uow_async is"]
        print(f"\n== async (diesel-async), {title(backend)}: medians ==\n")
        print_table(headers, table, sys.stdout)
        md += [f"### Async (diesel-async), {title(backend)}", "", markdown_table(headers, table), ""]
        ratios = async_ratio_rows(medians, backend)
        if ratios:
            headers = ["workload", "uow_async / same job by hand (one transaction)", "goal",
                       "uow_async / fastest lone statement", "uow_async / diesel-async loop",
                       "goal", "uow_async / uow_sync"]
            print(f"\n== async (diesel-async), {title(backend)}: ratios ==\n")
            print_table(headers, ratios, sys.stdout)
            md += [f"### Async ratios, {title(backend)}", "", markdown_table(headers, ratios), ""]
    if memory:
        headers = ["heap", "measured", "goal", "status"]
        rows = memory_rows(memory)
        print("\n== heap (bulk bench, counting allocator) ==\n")
        print_table(headers, rows, sys.stdout)
        md += ["### Heap", "", markdown_table(headers, rows), ""]
    if allocations:
        line = ", ".join(f"{k} {v:g}" for k, v in allocations.items())
        print(f"\nW5 heap allocations per field change: {line}")
        md += [f"W5 heap allocations per field change: {line}.", ""]
    if args.markdown:
        Path(args.markdown).write_text("\n".join(md) + "\n")
        print(f"\nMarkdown tables written to {args.markdown}")
    if args.svg:
        if svg_plot(medians, args.svg):
            print(f"plot written to {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
