#!/usr/bin/env python3
"""W1 and W2 with the SQLAlchemy 2.x ORM on in-memory SQLite, for the side-by-side table.

The same work as the Rust benchmarks (benches/workloads.rs), through the ORM's unit of work:

- W1: commit N new objects (N = 100 and 10,000): `session.add_all(objects); session.commit()`.
  Building the objects is untimed, as building the Rust values is.
- W2: load 10,000 rows, change one attribute of each, commit (a fresh session each time, so
  the load really reads). `w2_commit_only`: the load and the changes untimed, the commit timed.

Run directly (`python3 benches/sqlalchemy/bench.py`) or through `bash benches/run.sh`. The
first run creates `benches/sqlalchemy/.venv` and installs SQLAlchemy into it with pip, then
re-runs itself inside it. Medians (nanoseconds) are written as JSON to
`<target>/criterion/sqlalchemy.json`, where `<target>` is $CARGO_TARGET_DIR or `target`.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
REQUIREMENT = "sqlalchemy>=2,<3"


def ensure_venv():
    """Re-executes this script with the virtual environment's Python, creating it first."""
    if os.environ.get("UOW_SQLALCHEMY_VENV") == "1":
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    has_it = subprocess.call(
        [str(python), "-c", "import sqlalchemy, sys; sys.exit(sqlalchemy.__version__ < '2')"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if has_it != 0:
        print(f"installing {REQUIREMENT} into {VENV}", file=sys.stderr)
        subprocess.check_call(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT]
        )
    env = dict(os.environ, UOW_SQLALCHEMY_VENV="1")
    os.execve(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]], env)


def main():
    import sqlite3

    import sqlalchemy
    from sqlalchemy import BigInteger, String, create_engine, delete, insert, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String, nullable=False)
        qty: Mapped[int] = mapped_column(BigInteger, nullable=False)

    quick = "--quick" in sys.argv

    def new_items(n):
        return [Item(name=f"item {i}", qty=i) for i in range(n)]

    def fresh_engine():
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        return engine

    def median_ns(samples):
        return int(statistics.median(samples) * 1e9)

    results = {}

    # W1: commit N new objects.
    for n, reps in ((100, 300), (10_000, 15)):
        reps = max(3, reps // 10) if quick else reps
        engine = fresh_engine()
        samples = []
        for _ in range(reps + 1):  # the first round warms up
            with Session(engine) as session:
                session.execute(delete(Item))
                session.commit()
            objects = new_items(n)
            with Session(engine) as session:
                start = time.perf_counter()
                session.add_all(objects)
                session.commit()
                samples.append(time.perf_counter() - start)
                assert all(o.id is not None for o in objects[:1])
        with Session(engine) as session:
            assert session.scalar(select(sqlalchemy.func.count()).select_from(Item)) == n
        results[f"w1_insert_{n}"] = {"median_ns": median_ns(samples[1:]), "samples": reps}
        engine.dispose()

    # W2: load 10,000, change one field in each, commit.
    n = 10_000
    reps = 3 if quick else 10
    engine = fresh_engine()
    with Session(engine) as session:
        session.execute(insert(Item), [{"name": f"item {i}", "qty": i} for i in range(n)])
        session.commit()
    full, commit_only = [], []
    for _ in range(reps + 1):
        with Session(engine) as session:
            start = time.perf_counter()
            rows = session.scalars(select(Item)).all()
            for row in rows:
                row.qty += 1
            session.commit()
            full.append(time.perf_counter() - start)
        with Session(engine) as session:
            rows = session.scalars(select(Item)).all()
            for row in rows:
                row.qty += 1
            start = time.perf_counter()
            session.commit()
            commit_only.append(time.perf_counter() - start)
    with Session(engine) as session:
        first = session.scalars(select(Item).order_by(Item.id)).first()
        assert first.qty == 2 * (reps + 1), first.qty
    results["w2_update_10000"] = {"median_ns": median_ns(full[1:]), "samples": reps}
    results["w2_commit_only_10000"] = {"median_ns": median_ns(commit_only[1:]), "samples": reps}
    engine.dispose()

    report = {
        "sqlalchemy": sqlalchemy.__version__,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "results": results,
    }
    target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    if not target.is_absolute():
        target = HERE.parent.parent / target
    out = target / "criterion" / "sqlalchemy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"sqlalchemy {name}: median {r['median_ns'] / 1e6:.3f} ms over {r['samples']} runs")
    print(f"(SQLAlchemy {report['sqlalchemy']}, Python {report['python']}, SQLite {report['sqlite']}) -> {out}")


if __name__ == "__main__":
    ensure_venv()
    main()
