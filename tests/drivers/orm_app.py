"""An ORM app as apps are commonly built: SQLAlchemy 2 with two engines, the
"master engine for writes, slave engine for reads" shape of apps that split
reads themselves, here both pointed at one DSN (pgsplit, or the primary
directly, to compare):

- a sync engine on psycopg2, used by request handlers on threads;
- an async engine on asyncpg, used by request handlers that are asyncio
  tasks;

each with SQLAlchemy's default pool (pool_size 5, max_overflow 10).

--workers requests (20) run at once, half on each engine, each worker
serving --iterations requests one after another. A request opens a Session,
whose transaction both dialects begin before its first statement: it gets a
user by id, lists the user's five latest orders and, one time in five
(--write-share), places an order and reads the user's order count; it
thinks (--think-ms, 5 to 20 ms) between statements, then commits. Every
SELECT has inet_server_port() in its select list, so the app counts those
the replica (--replica-port) served.

Prints a summary, then on its last line one JSON object: requests,
statements, selects, replica_selects, errors, first_errors, wall_s and
latency percentiles in ms (request_p50, request_p95, request_p99,
statement_p50, statement_p99). Exits 0 whatever the errors: the caller
judges.

Usage:
  orm_app.py DSN --setup        create and fill the tables (dropped first)
  orm_app.py DSN --replica-port N [--workers 20] [--iterations 20]
             [--think-ms 5,20] [--write-share 0.2] [--seed 1]
DSN: postgresql://USER@HOST:PORT/DATABASE
"""
import argparse
import asyncio
import json
import random
import threading
import time
from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Numeric, String, create_engine, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

USERS = 200
ORDERS_PER_USER = 3


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "orm_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))


class Order(Base):
    __tablename__ = "orm_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("orm_users.id"), index=True)
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Stats:
    """What all workers measured; shared between threads."""

    def __init__(self, replica_port):
        self.replica_port = replica_port
        self.lock = threading.Lock()
        self.requests = []
        self.statements = []
        self.selects = 0
        self.replica_selects = 0
        self.errors = 0
        self.first_errors = []

    def statement(self, seconds, port=None):
        with self.lock:
            self.statements.append(seconds)
            if port is not None:
                self.selects += 1
                self.replica_selects += port == self.replica_port

    def request(self, seconds, error=None):
        with self.lock:
            self.requests.append(seconds)
            if error is not None:
                self.errors += 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{type(error).__name__}: {error}"[:500])


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def queries(user_id):
    """The request's reads: a user, the user's latest orders, their count."""
    port = func.inet_server_port()
    user = select(User, port).where(User.id == user_id)
    orders = (
        select(Order, port)
        .where(Order.user_id == user_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(5)
    )
    count = select(func.count(Order.id), port).where(Order.user_id == user_id)
    return user, orders, count


def sync_worker(engine, args, stats, seed):
    rng = random.Random(seed)
    sessions = sessionmaker(engine)
    think = lambda: time.sleep(rng.uniform(*args.think) / 1000)
    for _ in range(args.iterations):
        started = time.perf_counter()
        user_id = rng.randint(1, USERS)
        user_q, orders_q, count_q = queries(user_id)
        try:
            with sessions() as session, session.begin():
                t = time.perf_counter()
                _, port = session.execute(user_q).one()
                stats.statement(time.perf_counter() - t, port)
                think()
                t = time.perf_counter()
                rows = session.execute(orders_q).all()
                stats.statement(time.perf_counter() - t, rows[0][1])
                think()
                if rng.random() < args.write_share:
                    session.add(Order(user_id=user_id, total=Decimal(rng.randint(100, 99999)) / 100))
                    t = time.perf_counter()
                    session.flush()
                    stats.statement(time.perf_counter() - t)
                    t = time.perf_counter()
                    _, port = session.execute(count_q).one()
                    stats.statement(time.perf_counter() - t, port)
                    think()
            stats.request(time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.request(time.perf_counter() - started, e)


async def async_worker(sessions, args, stats, seed):
    rng = random.Random(seed)
    think = lambda: asyncio.sleep(rng.uniform(*args.think) / 1000)
    for _ in range(args.iterations):
        started = time.perf_counter()
        user_id = rng.randint(1, USERS)
        user_q, orders_q, count_q = queries(user_id)
        try:
            async with sessions() as session, session.begin():
                t = time.perf_counter()
                _, port = (await session.execute(user_q)).one()
                stats.statement(time.perf_counter() - t, port)
                await think()
                t = time.perf_counter()
                rows = (await session.execute(orders_q)).all()
                stats.statement(time.perf_counter() - t, rows[0][1])
                await think()
                if rng.random() < args.write_share:
                    session.add(Order(user_id=user_id, total=Decimal(rng.randint(100, 99999)) / 100))
                    t = time.perf_counter()
                    await session.flush()
                    stats.statement(time.perf_counter() - t)
                    t = time.perf_counter()
                    _, port = (await session.execute(count_q)).one()
                    stats.statement(time.perf_counter() - t, port)
                    await think()
            stats.request(time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.request(time.perf_counter() - started, e)


def setup(dsn):
    engine = create_engine(f"postgresql+psycopg2://{dsn}")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f"user {i}", email=f"user{i}@example.com") for i in range(1, USERS + 1))
        session.flush()
        session.add_all(
            Order(user_id=i, total=Decimal(i * 10 + k) / 100)
            for i in range(1, USERS + 1)
            for k in range(ORDERS_PER_USER)
        )
    engine.dispose()
    print(f"orm_app: created orm_users ({USERS}) and orm_orders ({USERS * ORDERS_PER_USER})")


def run(dsn, args):
    stats = Stats(args.replica_port)
    # SQLAlchemy's defaults (pool_size 5, max_overflow 10) on both engines.
    sync_engine = create_engine(f"postgresql+psycopg2://{dsn}", connect_args={"connect_timeout": 10})
    async_engine = create_async_engine(f"postgresql+asyncpg://{dsn}", connect_args={"timeout": 10})
    sync_workers = args.workers // 2
    async_workers = args.workers - sync_workers
    started = time.perf_counter()
    threads = [
        threading.Thread(target=sync_worker, args=(sync_engine, args, stats, args.seed * 1000 + i))
        for i in range(sync_workers)
    ]
    for t in threads:
        t.start()

    async def async_side():
        sessions = async_sessionmaker(async_engine, expire_on_commit=False)
        await asyncio.gather(
            *(async_worker(sessions, args, stats, args.seed * 1000 + sync_workers + i) for i in range(async_workers))
        )
        await async_engine.dispose()

    asyncio.run(async_side())
    for t in threads:
        t.join()
    sync_engine.dispose()
    wall = time.perf_counter() - started

    report = {
        "requests": len(stats.requests),
        "statements": len(stats.statements),
        "selects": stats.selects,
        "replica_selects": stats.replica_selects,
        "errors": stats.errors,
        "first_errors": stats.first_errors,
        "wall_s": round(wall, 3),
        "request_p50": round(percentile(stats.requests, 50), 2),
        "request_p95": round(percentile(stats.requests, 95), 2),
        "request_p99": round(percentile(stats.requests, 99), 2),
        "statement_p50": round(percentile(stats.statements, 50), 3),
        "statement_p99": round(percentile(stats.statements, 99), 3),
    }
    share = stats.replica_selects / stats.selects if stats.selects else 0.0
    print(
        f"orm_app: {report['requests']} requests ({args.workers} at once, {sync_workers} psycopg2 + "
        f"{async_workers} asyncpg), {report['statements']} statements, {stats.selects} SELECTs of which "
        f"{stats.replica_selects} ({share:.0%}) on the replica, {stats.errors} errors, in {wall:.1f} s"
    )
    print(
        f"orm_app: request p50 {report['request_p50']} ms, p95 {report['request_p95']} ms, "
        f"p99 {report['request_p99']} ms; statement p50 {report['statement_p50']} ms, "
        f"p99 {report['statement_p99']} ms"
    )
    for e in stats.first_errors:
        print(f"orm_app: error: {e}")
    print(json.dumps(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dsn", help="postgresql://USER@HOST:PORT/DATABASE")
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--replica-port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--think-ms", default="5,20")
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.think = tuple(float(x) for x in args.think_ms.split(","))
    dsn = args.dsn.split("://", 1)[-1]
    if args.setup:
        setup(dsn)
    else:
        run(dsn, args)


main()
