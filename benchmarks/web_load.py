"""Load test of ``sparse-rational serve`` on loopback.

    python benchmarks/web_load.py --model runs/kitchen20 [--requests 5000] [--concurrency 1,8,64] [--json FILE]

Starts the server in its own process (``--server-args`` are passed on), and measures:

* start-up (``--startup-runs`` times, then once more before the load): seconds from
  launching the process to the first ``GET /health`` answered, and to the first
  ``POST /predict`` answered, and the CPU seconds the server used until ``/health`` answered
  (about its start-up time on an idle core, whatever else the machine runs);
  ``--requests 0`` measures only this;
* per concurrency level ``c``: ``--requests`` ``POST /predict`` requests of one kitchen test
  review each (cycling through the 200), ``c`` in flight at any time (``c`` keep-alive
  connections of a lean asyncio HTTP/1.1 client, :func:`level`): throughput, latency
  p50/p90/p99/max, errors (any status but 200, any exception), and how many model calls the
  server made for them (its batching);
* the CPU milliseconds per request of the server (its processes) and of this client: a
  measure that other jobs on the machine do not change, unlike the wall-clock figures;
* the server's resident memory (``VmRSS``) after a warm-up (200 requests, then waiting until
  the server scores with its fused kernel, :func:`wait_kernel`) and after each
  level, over ``--rounds`` rounds of all the levels (memory must not grow).

The client runs on the same machine as the server and takes CPU from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:  # run as a script (python benchmarks/NAME.py): this folder is on sys.path
    from _provenance import provenance
except ImportError:  # imported as benchmarks.NAME
    from ._provenance import provenance


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """:func:`cpu_s` of ``pid`` and of its living descendants (the worker processes of
    ``--workers N``)."""
    total, pids = 0.0, [pid]
    while pids:
        p = pids.pop()
        try:
            total += cpu_s(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def level(url: str, texts: list[str], requests: int, concurrency: int) -> dict:
    """``requests`` POSTs, ``concurrency`` keep-alive connections each sending one request at a
    time. A lean HTTP/1.1 client on asyncio streams (a client as heavy as the server would
    measure itself on this 2-core machine); a response counts as an answer only with status 200
    and one prediction in its JSON."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue = iter(range(requests))

    async def one(reader, writer, body: bytes) -> str:
        head = b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" % host.encode()
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length:"))
        data = json.loads(await reader.readexactly(length))
        return "ok" if status == 200 and len(data["predictions"]) == 1 else f"HTTP {status}"

    async def worker():
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in queue:
            start = time.perf_counter()
            try:
                key = await one(reader, writer, bodies[i % len(bodies)])
            except Exception as exc:  # counted, never fatal; a new connection for the next one
                key = type(exc).__name__
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
            latencies.append(time.perf_counter() - start)
            if key != "ok":
                errors[key] = errors.get(key, 0) + 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(wall, 3),
        "requests_per_s": round(requests / wall, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p90_ms": round(q[89] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def wait_healthy(server: subprocess.Popen, url: str, launched: float) -> None:
    """Poll ``GET /health`` until it answers 200 (at most 120 s after ``launched``)."""
    import httpx

    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.perf_counter() - launched > 120:
            raise SystemExit("the server did not start")
        time.sleep(0.02)


def wait_kernel(url: str, limit: float = 120) -> float:
    """Seconds waited (at most ``limit``) until ``GET /health`` says the server scores with its
    fused kernel (``impl`` other than ``scan``, which it serves with while the kernel loads):
    the load is measured on the server as it runs from then on. With ``--workers N`` each
    answer comes from one worker; five answers in a row must say so."""
    import httpx

    start, in_a_row = time.perf_counter(), 0
    while in_a_row < 5 and time.perf_counter() - start < limit:
        in_a_row = in_a_row + 1 if httpx.get(url + "/health").json()["impl"] != "scan" else 0
        time.sleep(0.05 if in_a_row else 0.2)
    return round(time.perf_counter() - start, 2)


def startup(cmd: list[str], url: str, cwd: str | None = None) -> dict:
    """Launch the server, time ``GET /health`` and the first ``POST /predict``, stop it."""
    import httpx

    launched = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(server, url, launched)
        health, cpu = time.perf_counter() - launched, cpu_s(server.pid)
        httpx.post(url + "/predict", json={"texts": ["it works"]}, timeout=120).raise_for_status()
        first = time.perf_counter() - launched
        return {"health_s": round(health, 3), "first_predict_s": round(first, 3), "cpu_s_at_health": round(cpu, 2)}
    finally:
        server.terminate()
        server.wait(30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--rounds", type=int, default=2, help="run all levels this many times (memory must not grow)")
    p.add_argument("--data-dir", default=os.environ.get("SPARSE_RATIONAL_DATA"))
    p.add_argument("--startup-runs", type=int, default=5, help="time this many start-ups first")
    p.add_argument("--server-args", default="", help="more options for sparse-rational serve")
    p.add_argument(
        "--server-cwd",
        help="start the server in this folder: python -m finds the sparse_rational package there first "
        "(a checkout of another commit, to compare against)",
    )
    p.add_argument("--json")
    args = p.parse_args(argv)
    import httpx

    from sparse_rational.data import load_dataset

    texts = [ex.text for ex in load_dataset("amazon:kitchen", args.data_dir).test]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "sparse_rational.cli", "serve", "--model", args.model, "--port", str(port)]
    cmd += args.server_args.split()
    result: dict = {"model": args.model, "server": cmd[2:], "server_cwd": args.server_cwd, "texts": len(texts)}
    if args.startup_runs:
        runs = [startup(cmd, url, args.server_cwd) for _ in range(args.startup_runs)]
        result["startup"] = {
            "health_s_median": statistics.median(r["health_s"] for r in runs),
            "first_predict_s_median": statistics.median(r["first_predict_s"] for r in runs),
            "cpu_s_at_health_median": statistics.median(r["cpu_s_at_health"] for r in runs),
            "runs": runs,
            "load_average_1min": os.getloadavg()[0],
        }
        print(json.dumps(result["startup"]), flush=True)
    if not args.requests:
        result["provenance"] = provenance(argv)
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    launched = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=args.server_cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(server, url, launched)
        result["startup_health_s"] = round(time.perf_counter() - launched, 3)
        httpx.post(url + "/predict", json={"texts": [texts[0]]}, timeout=120).raise_for_status()
        result["startup_first_predict_s"] = round(time.perf_counter() - launched, 3)
        result["rss_mb_after_start"] = round(rss_mb(server.pid), 1)
        asyncio.run(level(url, texts, 200, 8))  # warm-up
        result["kernel_wait_s"] = wait_kernel(url)
        memory = {"after_warmup": round(rss_mb(server.pid), 1)}
        levels = [int(c) for c in args.concurrency.split(",")]
        rounds = []
        for r in range(args.rounds):
            rows = []
            for c in levels:
                before = httpx.get(url + "/health").json()
                server_cpu, client_cpu = tree_cpu_s(server.pid), time.process_time()
                row = asyncio.run(level(url, texts, args.requests, c))
                client_cpu, server_cpu = time.process_time() - client_cpu, tree_cpu_s(server.pid) - server_cpu
                after = httpx.get(url + "/health").json()
                row["server_cpu_ms_per_request"] = round(server_cpu / row["requests"] * 1000, 3)
                row["client_cpu_ms_per_request"] = round(client_cpu / row["requests"] * 1000, 3)
                row["load_average_1min"] = os.getloadavg()[0]
                row["model_calls"] = after["batches"] - before["batches"]
                row["texts_per_model_call"] = round(row["requests"] / max(row["model_calls"], 1), 2)
                row["rss_mb_after"] = round(rss_mb(server.pid), 1)
                rows.append(row)
                print(json.dumps({"round": r + 1, **row}), flush=True)
            rounds.append(rows)
            memory[f"after_round_{r + 1}"] = rows[-1]["rss_mb_after"]
        result.update({"rounds": rounds, "rss_mb": memory})
        result["server_alive"] = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    result["provenance"] = provenance(argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
