"""The client side of make bench-peers: the no-op task, measured as
make bench measures ping, printed beside bench/latest.json.

    peers.sh --> redis-server (127.0.0.1, own port, no persistence)
             --> celery worker: prefork, 2 processes
             --> this script: sequential latency, throughput at
                 concurrency 1, 8, 64 (a thread and a Celery app per
                 client), RSS and CPU per call of Redis and Celery

Every loop is bounded in calls and in time. Standard library and
Debian's python3-celery only.
"""

import argparse
import json
import os
import sys
import threading
import time

from celery import Celery

TASK = "snakebench.noop"
CONCURRENCY = (1, 8, 64)


def make_app(url):
    return Celery("snakebench_client", broker=url, backend=url)


def call(app):
    result = app.send_task(TASK, kwargs={"message": "hi"})
    return result.get(timeout=10)


def wait_ready(app, seconds):
    """Call until the worker answers, within seconds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            app.send_task(TASK).get(timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def sequential(app, n):
    out = []
    for _ in range(n):
        began = time.perf_counter()
        call(app)
        out.append(time.perf_counter() - began)
    out.sort()
    return out


def quantile(sorted_values, p):
    i = max(int(-(-p * len(sorted_values) // 1)) - 1, 0)
    return sorted_values[min(i, len(sorted_values) - 1)]


def closed_loop(url, clients, seconds, limit):
    """calls per second of clients threads, each with its own app."""
    lock = threading.Lock()
    state = {"issued": 0, "done": 0, "failed": 0}
    deadline = time.monotonic() + seconds

    def client():
        app = make_app(url)
        while time.monotonic() < deadline:
            with lock:
                if state["issued"] >= limit:
                    return
                state["issued"] += 1
            try:
                call(app)
                key = "done"
            except Exception:
                key = "failed"
            with lock:
                state[key] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return state["done"] / elapsed, state["done"], state["failed"]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def measure(args):
    app = make_app(args.url)
    wait_ready(app, 30)
    sequential(app, 100)
    lat = sequential(app, args.samples)
    figures = {
        "ping_p50": quantile(lat, 0.5) * 1e6,
        "ping_p99": quantile(lat, 0.99) * 1e6,
        "ping_p99_9": quantile(lat, 0.999) * 1e6,
    }
    for c in CONCURRENCY:
        rate, _, failed = closed_loop(args.url, c, args.seconds, 100000)
        if failed:
            print(f"concurrency {c}: {failed} calls failed", file=sys.stderr)
        figures[f"throughput_c{c}"] = rate
    workers = children(args.celery_pid)
    pids = [args.redis_pid, args.celery_pid] + workers
    cpu0 = [cpu_seconds(p) for p in pids]
    _, calls, _ = closed_loop(args.url, 64, 60, args.cpu_calls)
    cpu1 = [cpu_seconds(p) for p in pids]
    spent = [b - a for a, b in zip(cpu0, cpu1)]
    figures["broker_cpu_per_call"] = spent[0] / max(calls, 1) * 1e6
    figures["agent_cpu_per_call"] = spent[1] / max(calls, 1) * 1e6
    figures["worker_cpu_per_call"] = sum(spent[2:]) / max(calls, 1) * 1e6
    figures["python_worker_rss"] = max(rss_mb(p) for p in workers)
    figures["agent_rss_load"] = rss_mb(args.celery_pid)
    figures["broker_rss"] = rss_mb(args.redis_pid)
    return figures


# figure name in latest.json, label, unit, what the Celery side is
ROWS = (
    ("ping_p50", "sequential call p50", "µs", "task round trip"),
    ("ping_p99", "sequential call p99", "µs", "task round trip"),
    ("ping_p99_9", "sequential call p99.9", "µs", "task round trip"),
    ("throughput_c1", "throughput, concurrency 1", "calls/s", "2 prefork"),
    ("throughput_c8", "throughput, concurrency 8", "calls/s", "2 prefork"),
    ("throughput_c64", "throughput, concurrency 64", "calls/s", "2 prefork"),
    ("agent_cpu_per_call", "agent CPU per call", "µs",
     "celery main process"),
    ("worker_cpu_per_call", "Python worker CPU per call", "µs",
     "2 prefork children"),
    ("broker_cpu_per_call", "broker CPU per call", "µs", "redis-server"),
    ("agent_rss_load", "agent RSS (after load)", "MB",
     "celery main process"),
    ("python_worker_rss", "Python worker RSS (largest)", "MB",
     "prefork child"),
    ("broker_rss", "broker RSS", "MB", "redis-server"),
)


def product_figures(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except OSError:
        return {}
    return {f["name"]: f["value"] for f in report.get("figures", [])}


def show(value):
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def print_table(product, peer):
    rows = [("figure", "snakepit", "celery+redis", "celery ÷ snakepit",
             "celery side")]
    for name, label, unit, what in ROWS:
        ours, theirs = product.get(name), peer.get(name)
        ratio = "—"
        if ours and theirs is not None:
            ratio = f"{theirs / ours:.2f}"
        ours_text = "—" if ours is None else f"{show(ours)} {unit}"
        rows.append((label, ours_text, f"{show(theirs)} {unit}", ratio, what))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis-pid", type=int, required=True)
    parser.add_argument("--celery-pid", type=int, required=True)
    parser.add_argument("--latest", required=True,
                        help="bench/latest.json of make bench")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu-calls", type=int, default=5000)
    parser.add_argument("--out", help="write the Celery figures as JSON")
    args = parser.parse_args()
    peer = measure(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(peer, f, indent=2)
    print_table(product_figures(args.latest), peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
