"""Throughput and latency of `nmt serve` under load: 1, 8 and 32 concurrent clients, each sending one
sentence per POST /translate request (a chat app's pattern), printing sentences/second, p50/p95/p99
latency, the ratio to the 1-client figure and the ratio to the same lines translated in one process
(`nmt translate -m MODEL --input FILE --beam B`, timed in-process with the Python API, start-up excluded).

    python benchmarks/serve_load.py -m work/multi30k_en_fr/averaged \\
        --input ../shared/data/multi30k/test_2016_flickr.en.gz --limit 1000 --clients 1,8,32

First the first --limit lines are translated in this process (`nmt.load(MODEL, beam_size=B, threads=T)
.translate(lines)`, after a one-line warm-up); those translations are the reference answers. Then
`nmt serve` starts as a subprocess on a free loopback port (127.0.0.1 only) with --beam, --threads and
--max-wait-ms, gets one untimed warm-up request, and each client count is one round: that many threads,
each with its own HTTP connection, take the next unsent line until all are sent, timing each request.
A round stops after --max-seconds (it says so; its figures are then over the lines answered). Every
answer is checked against the reference answer for its line; mismatches and failed requests are counted
and the first few printed. Sentences/second is lines answered over the round's wall-clock time. The
clients run in this process and share the machine's cores with the server, as a local proxy would.
The server is stopped (SIGTERM, then killed if it lingers) at the end, on an error and on Ctrl-C.
Nothing is written to disk. Needs the serve extra: pip install 'nmt[serve]'.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_MODEL = Path("/work/runs/m30k/work/multi30k_en_fr/averaged")
DEFAULT_INPUT = Path("../shared/data/multi30k/test_2016_flickr.en.gz")
SHOW = 5  # mismatches and errors printed per round


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Server:
    """`nmt serve` in a subprocess on 127.0.0.1; stop() always ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, model: Path, port: int, beam: int, threads: int, max_wait_ms: float) -> None:
        self.port = port
        command = [sys.executable, "-m", "nmt_cli.main", "serve", "-m", str(model), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--beam", str(beam), "--threads", str(threads)]
        command += ["--max-wait-ms", str(max_wait_ms)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []  # kept to say why, should it fail
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_ready(self, timeout: float) -> None:
        """Poll GET /health until it answers 200; exit with the server's stderr if it dies or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(5)
                sys.exit(f"nmt serve exited with code {self.proc.returncode}:\n{''.join(self.stderr)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    conn.request("GET", "/health")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"nmt serve did not answer GET /health within {timeout:.0f} s:\n{''.join(self.stderr)}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"nmt serve did not stop within {timeout:.0f} s of SIGTERM; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


def post(conn: http.client.HTTPConnection, line: str) -> str:
    """One POST /translate {"text": line}; the translation's text, or an exception saying what came back."""
    body = json.dumps({"text": line}).encode("utf-8")
    conn.request("POST", "/translate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data.decode('utf-8', 'replace')[:200]}")
    return json.loads(data)["translations"][0]["text"]


def run_round(port: int, lines: list[str], expected: list[str], clients: int, max_seconds: float) -> dict:
    """Send every line once from `clients` threads, one line per request; latencies, mismatches, errors."""
    lock = threading.Lock()
    next_index = iter(range(len(lines)))
    latencies: list[float] = []
    mismatches: list[tuple[int, str]] = []
    errors: list[tuple[int, str]] = []
    stopped = threading.Event()
    start = time.perf_counter()
    deadline = start + max_seconds
    last_done = [start]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max_seconds + 60)
        try:
            while True:
                with lock:
                    if time.perf_counter() >= deadline:
                        stopped.set()
                        return
                    index = next(next_index, None)
                if index is None:
                    return
                sent = time.perf_counter()
                try:
                    text = post(conn, lines[index])
                except Exception as e:  # noqa: BLE001 - counted and shown, the round goes on
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max_seconds + 60)
                    with lock:
                        errors.append((index, f"{type(e).__name__}: {e}"))
                    continue
                done = time.perf_counter()
                with lock:
                    latencies.append(done - sent)
                    last_done[0] = max(last_done[0], done)
                    if text != expected[index]:
                        mismatches.append((index, text))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # joined with a timeout, so Ctrl-C gets through
            thread.join(0.5)
    seconds = last_done[0] - start
    return {
        "clients": clients,
        "answered": len(latencies),
        "seconds": seconds,
        "latencies": latencies,
        "mismatches": sorted(mismatches),
        "errors": sorted(errors),
        "stopped": stopped.is_set(),
    }


def parse_args() -> tuple[argparse.Namespace, list[int]]:
    """The command line, checked; and the client counts of the rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-m",
        "--model",
        type=Path,
        required=not DEFAULT_MODEL.exists(),
        default=DEFAULT_MODEL if DEFAULT_MODEL.exists() else None,
        help=f"model or run directory (default: {DEFAULT_MODEL} if it exists)",
    )
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="source sentences, one per line (.gz ok)")
    parser.add_argument("--limit", type=int, default=1000, help="the first this many lines of --input are sent")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts, one round each")
    parser.add_argument("--beam", type=int, default=5, help="beam size (server and in-process alike)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the model (default: all cores)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="passed to nmt serve --max-wait-ms")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="a round stops after this many seconds")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for GET /health")
    args = parser.parse_args()
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error(f"--clients {args.clients!r}: give comma-separated whole numbers, such as 1,8,32")
    if not counts or min(counts) < 1:
        parser.error(f"--clients {args.clients!r}: every count must be at least 1")
    for flag, value in (("--limit", args.limit), ("--beam", args.beam), ("--max-seconds", args.max_seconds)):
        if value <= 0:
            parser.error(f"{flag} {value}: must be more than 0")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    return args, counts


def translate_locally(args: argparse.Namespace, lines: list[str], threads: int) -> tuple[list[str], float]:
    """The translations of one process (`nmt.load`) after a warm-up, and the seconds they took."""
    import nmt

    loaded = nmt.load(args.model, beam_size=args.beam, threads=threads)
    loaded.translate(lines[:1])  # warm-up
    start = time.perf_counter()
    expected = loaded.translate(lines)
    local_seconds = time.perf_counter() - start
    del loaded
    gc.collect()
    return expected, local_seconds


def serve_rounds(
    args: argparse.Namespace, lines: list[str], expected: list[str], counts: list[int], threads: int
) -> list[dict]:
    """Start nmt serve, warm it up, and run one round per client count."""
    rounds = []
    server = Server(args.model, free_port(), args.beam, threads, args.max_wait_ms)
    try:
        server.wait_ready(args.startup_timeout)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=args.startup_timeout)
        try:
            post(conn, lines[0])  # warm-up, untimed
        finally:
            conn.close()
        for clients in counts:
            rounds.append(run_round(server.port, lines, expected, clients, args.max_seconds))
    finally:
        server.stop()
    return rounds


def print_table(rounds: list[dict], local_seconds: float, n_lines: int) -> None:
    """Throughput and latencies of each round beside the one process's."""
    local = n_lines / local_seconds
    base = rounds[0]["answered"] / rounds[0]["seconds"] if rounds[0]["clients"] == 1 and rounds[0]["seconds"] else None
    print(
        f"{'run':<22} {'sent/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'vs 1 client':>11} "
        f"{'vs 1 process':>12} {'wrong':>6} {'errors':>6}"
    )
    print(
        f"{'1 process (translate)':<22} {local:>8.1f} {'-':>8} {'-':>8} {'-':>8} {'-':>11} {'1.00x':>12} "
        f"{'-':>6} {'-':>6}"
    )
    for r in rounds:
        rate = r["answered"] / r["seconds"] if r["seconds"] > 0 else 0.0
        lat = [s * 1000 for s in r["latencies"]]
        p50, p95, p99 = (f"{percentile(lat, q):.0f}" if lat else "-" for q in (50, 95, 99))
        vs_one = f"{rate / base:.2f}x" if base else "-"
        name = f"serve, {r['clients']} client{'s' if r['clients'] > 1 else ''}"
        print(
            f"{name:<22} {rate:>8.1f} {p50:>8} {p95:>8} {p99:>8} {vs_one:>11} {rate / local:>11.2f}x "
            f"{len(r['mismatches']):>6} {len(r['errors']):>6}"
        )


def print_problems(rounds: list[dict], lines: list[str], expected: list[str], max_seconds: float) -> bool:
    """Say which rounds stopped early and show the first wrong answers and errors; whether there were any."""
    failed = False
    for r in rounds:
        where = f"{r['clients']} client{'s' if r['clients'] > 1 else ''}"
        if r["stopped"]:
            print(f"{where}: stopped after --max-seconds {max_seconds:g}: {r['answered']} of {len(lines)} answered")
        for index, text in r["mismatches"][:SHOW]:
            print(
                f"{where}: line {index + 1} differs\n  source:     {lines[index]}\n  expected:   "
                f"{expected[index]}\n  nmt serve:  {text}"
            )
        for index, message in r["errors"][:SHOW]:
            print(f"{where}: line {index + 1} failed: {message}")
        hidden = max(0, len(r["mismatches"]) - SHOW) + max(0, len(r["errors"]) - SHOW)
        if hidden:
            print(f"{where}: {hidden} more mismatches or errors not shown")
        failed = failed or bool(r["mismatches"] or r["errors"])
    return failed


def main() -> None:
    args, counts = parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))

    import torch

    from nmt.data import read_lines

    lines = read_lines(args.input)[: args.limit]
    if not lines:
        sys.exit(f"{args.input}: no lines")
    expected, local_seconds = translate_locally(args, lines, threads)
    rounds = serve_rounds(args, lines, expected, counts, threads)

    print(
        f"model {args.model}, {len(lines)} sentences from {args.input.name}, beam {args.beam}; torch "
        f"{torch.__version__}, {threads} threads; nmt serve --max-wait-ms {args.max_wait_ms:g}, one sentence per "
        f"request; latencies over each round's requests"
    )
    print_table(rounds, local_seconds, len(lines))
    if print_problems(rounds, lines, expected, args.max_seconds):
        sys.exit("some answers of nmt serve were wrong or failed (above): the figures measure wrong output")


if __name__ == "__main__":
    main()
