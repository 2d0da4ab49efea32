#!/usr/bin/env bash
# Runs the whole benchmark suite and prints the table of medians and ratios (BENCHMARKS.md).
#
#   bash benches/run.sh                       # SQLite (in memory) + SQLAlchemy
#   bash benches/run.sh --features postgres   # the same, plus every workload on PostgreSQL
#
# Arguments are passed to `cargo bench` (e.g. `--features postgres`). Criterion writes its
# results under $CARGO_TARGET_DIR/criterion (default target/criterion); the summary reads
# them from there, with the SQLAlchemy numbers (benches/sqlalchemy/bench.py, which creates its
# own virtual environment on first use) and the W5 allocation counts. It also writes the
# tables as Markdown and the plot of W1 and W2 next to criterion's results
# ($target/criterion/uow-summary.md and w1_w2.svg); BENCHMARKS.md and benches/w1_w2.svg are
# copies of those from the machine described there.
#
# Set UOW_BENCH_SKIP_SQLALCHEMY=1 to skip the Python part, UOW_BENCH_SUMMARY_ONLY=1 to only
# print the table of the last run. PostgreSQL is reached at $UOW_TEST_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test); each benchmark uses a schema of its own, dropped
# afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"

if [ "${UOW_BENCH_SUMMARY_ONLY:-0}" != 1 ]; then
    # Results of an earlier run must not leak into this table.
    rm -rf "$target/criterion"
    cargo bench --bench workloads --bench tracking --bench bulk --bench aggregates "$@"
    # The outbox's commit (and, with `--features rabbitmq,nats`, the relay's throughput).
    cargo bench --bench outbox --features outbox "$@"
    if [ "${UOW_BENCH_SKIP_SQLALCHEMY:-0}" != 1 ]; then
        python3 benches/sqlalchemy/bench.py
    fi
fi

python3 benches/summarize.py --markdown "$target/criterion/uow-summary.md" \
    --svg "$target/criterion/w1_w2.svg"
