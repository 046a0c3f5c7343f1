"""The daemon's HTTP endpoint under 2,000 slow clients: probe latency, threads, learning rate.

In one process, for the endpoint as shipped (waitress) and, for comparison,
the stdlib `ThreadingHTTPServer` it replaced (a thread per connection), it
measures

- /healthz latency (p50, p99 over 200 probes) with no other client, and
  again while 2,000 connections each hold half a request header;
- threads alive while those connections wait, and after they leave;
- the learning core's rate (joined interactions/s through `ControllerCore`,
  on the main thread as the daemon's loop runs; best of 3, since the machine
  is shared) quiet and under the slow clients, and the ratio (issue 14's
  target: within 10 % of quiet, so >= 0.9).

    .venv/bin/python bench/http_slow_clients.py [--clients 2000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stopbandit.controller.config import StopbanditConfig
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.http import HttpServer
from stopbandit.controller.daemon.metrics import Metrics
from stopbandit.streams.events import Decision, Outcome

PROBES = 200
INTERACTIONS = 20_000


class _View:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.healthy = True
        self.ready = True

    def policies(self) -> dict[str, Any]:
        return {}

    def savings(self) -> dict[str, Any]:
        return {}


class _Stdlib:
    """The endpoint before: the stdlib's threading server answering /healthz."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *_: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, *_: object) -> None:
                pass  # probes that gave up: their broken pipes are not the measurement

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def probe_ms(port: int) -> tuple[float, float, int]:
    """p50 and p99 of /healthz in ms, and how many probes failed (10 s timeout)."""
    times, failed = [], 0
    for _ in range(PROBES):
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                r.read()
        except OSError:
            failed += 1
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * len(times)) - 1], failed


def learning_rate() -> float:
    """Joined interactions/s through the learning core, on this thread (best of 3 runs)."""
    return max(_learning_rate() for _ in range(3))


def _learning_rate() -> float:
    core = ControllerCore(StopbanditConfig())
    start = time.perf_counter()
    for i in range(INTERACTIONS):
        rid = f"r{i}"
        segment = f"s{i % 8}"
        core.offer(
            Decision(
                v=1,
                request_id=rid,
                ts=float(i),
                segment=segment,
                threshold=1.0,
                probability=1.0,
                policy_version=1,
            ),
            now=float(i),
        )
        core.offer(
            Outcome(
                v=1,
                request_id=rid,
                ts=float(i),
                segment=segment,
                em=float(i % 3 > 0),
                tokens=800 + i % 400,
            ),
            now=float(i),
        )
    return INTERACTIONS / (time.perf_counter() - start)


def stall(port: int, clients: int) -> list[socket.socket]:
    """Connections that send half a request header and then nothing."""
    stalled = []
    for _ in range(clients):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stalled.append(connection)
    return stalled


def measure(name: str, server: Any, port: int, clients: int) -> None:  # noqa: ANN401
    """One row: probes and learning quiet, then under the stalled connections."""
    baseline = threading.active_count()
    quiet_p50, quiet_p99, _ = probe_ms(port)
    quiet_rate = learning_rate()
    stalled = stall(port, clients)
    time.sleep(0.5)
    threads = threading.active_count()
    # Learning first: the shipped server closes connections idle for 10 s.
    slow_rate = learning_rate()
    slow_p50, slow_p99, failed = probe_ms(port)
    for connection in stalled:
        connection.close()
    time.sleep(1.0)
    after = threading.active_count()
    server.stop()
    print(
        f"{name:<22} {quiet_p50:8.2f} {quiet_p99:8.2f} {slow_p50:8.2f} {slow_p99:8.2f} "
        f"{failed:6d} {baseline:5d} {threads:7d} {after:6d} {quiet_rate:9,.0f} {slow_rate:9,.0f} "
        f"{slow_rate / quiet_rate:6.2f}"
    )


def main() -> None:
    """Both servers, one after the other, in this process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=2000)
    args = parser.parse_args()
    print(f"/healthz latency in ms (p50, p99 of {PROBES}), with {args.clients} slow clients;")
    print("threads before / meanwhile / after; learning core interactions/s quiet, slow, ratio")
    print(
        f"{'server':<22} {'q p50':>8} {'q p99':>8} {'s p50':>8} {'s p99':>8} {'failed':>6} "
        f"{'thr':>5} {'thr mid':>7} {'after':>6} {'learn q':>9} {'learn s':>9} {'ratio':>6}"
    )
    shipped = HttpServer(_View(), "127.0.0.1", 0)
    shipped.start()
    measure("waitress (shipped)", shipped, shipped.port, args.clients)
    before = _Stdlib()
    before.start()
    measure("stdlib thread/conn", before, before.port, args.clients)


if __name__ == "__main__":
    main()
