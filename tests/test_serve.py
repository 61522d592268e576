"""`nmt serve`: a real server in a subprocess on a free port of 127.0.0.1, spoken to with the standard library."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import LINES, Server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from nmt.line_translator import LineTranslator, Translation  # noqa: E402
from nmt.serve.batcher import Batcher, Limits, Options  # noqa: E402
from nmt.serve.protocol import RequestError, parse_request  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (ROOT / "data" / "sample" / "test.en").read_text(encoding="utf-8").splitlines()[:60]

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def expected(tiny_model_dir: Path) -> dict[str, str]:
    """What `nmt translate --beam 5` says of each line (and of the lines the load test sends)."""
    lines = LINES + [f"The dog number {i} runs." for i in range(20)] + SAMPLE
    run = subprocess.run(
        [sys.executable, "-m", "nmt_cli.main", "translate", "-m", str(tiny_model_dir), "--beam", "5", "--threads", "1"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    out = run.stdout.split("\n")[: len(lines)]
    assert len(out) == len(lines)
    return dict(zip(lines, out))


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[Server]:
    s = Server(tiny_model_dir)
    yield s
    assert s.stop() == 0


def test_answers_equal_nmt_translate(server: Server, expected: dict[str, str]) -> None:
    status, body = server.translate(LINES)
    assert status == 200
    assert [t["text"] for t in body["translations"]] == [expected[line] for line in LINES]
    assert body["translations"][1] == {"text": "", "score": 0.0, "nbest": [{"text": "", "score": 0.0, "log_prob": 0.0}]}
    status, body = server.translate(LINES[0])  # a string is one line
    assert status == 200 and [t["text"] for t in body["translations"]] == [expected[LINES[0]]]
    status, body = server.translate(LINES[2], nbest=3)
    assert status == 200
    best = body["translations"][0]
    assert best["text"] == expected[LINES[2]] and best["nbest"][0]["text"] == best["text"]
    assert 1 <= len(best["nbest"]) <= 3 and all(set(h) == {"text", "score", "log_prob"} for h in best["nbest"])


def test_a_line_cut_for_length_is_said_in_warnings(
    server: Server, expected: dict[str, str], tiny_model_dir: Path
) -> None:
    """What `nmt translate` warns of on stderr, the answer says under 'warnings', naming the request's line."""
    long = "word " * 3000  # far longer than the tiny model's positions
    status, body = server.translate([LINES[0], long, LINES[2]])
    assert status == 200 and [t["text"] for t in body["translations"]][::2] == [expected[LINES[0]], expected[LINES[2]]]
    translated = subprocess.run(
        [sys.executable, "-m", "nmt_cli.main", "translate", "-m", str(tiny_model_dir), "--threads", "1"],
        input=f"{LINES[0]}\n{long}\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    said = translated.stderr.strip()
    assert said.startswith("warning: <stdin>:2: ") and "longer than the model takes" in said
    assert body["warnings"] == ["line " + said.removeprefix("warning: <stdin>:")]
    status, body = server.translate(LINES)
    assert status == 200 and "warnings" not in body  # nothing cut: no key, as before


@pytest.fixture(scope="module")
def other_options(tiny_model_dir: Path) -> dict[str, list[str]]:
    """What `nmt translate` says of LINES with --beam 1, and with --beam 3 --align."""
    found = {}
    for name, flags in (("greedy", ["--beam", "1"]), ("aligned", ["--beam", "3", "--align"])):
        run = subprocess.run(
            [sys.executable, "-m", "nmt_cli.main", "translate", "-m", str(tiny_model_dir), "--threads", "1", *flags],
            input="\n".join(LINES) + "\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        found[name] = run.stdout.split("\n")[: len(LINES)]
    return found


def test_beam_and_alignment_per_request_equal_nmt_translate(
    server: Server, expected: dict[str, str], other_options: dict[str, list[str]]
) -> None:
    def ask(**fields: Any) -> Any:
        return ThreadPoolExecutor(1).submit(server.translate, LINES, **fields)

    # sent together, so the batcher sees requests with different options side by side
    asked = [ask(beam=1), ask(beam=3, align=True), ask(), ask(beam=1, nbest=1)]
    (s1, greedy), (s2, aligned), (s3, default), (s4, greedy_again) = [f.result(60) for f in asked]
    assert s1 == s2 == s3 == s4 == 200
    assert (
        [t["text"] for t in greedy["translations"]]
        == other_options["greedy"]
        == [t["text"] for t in greedy_again["translations"]]
    )
    assert [t["text"] for t in default["translations"]] == [expected[line] for line in LINES]
    assert all("alignment" not in t for t in default["translations"])
    with_alignment = [
        f"{t['text']} ||| {t['alignment']}" if t["alignment"] else t["text"] for t in aligned["translations"]
    ]
    assert with_alignment == other_options["aligned"]


def test_split_per_request_equals_nmt_translate(server: Server, tiny_model_dir: Path) -> None:
    """A request's "split" is `nmt translate --split`; without one, the server's (sentence, the default)."""
    paragraphs = ["Hello! How was your day? I hope the meeting went well.", "Good morning. Thank you very much."]
    said = {}
    for split in ("sentence", "none"):
        run = subprocess.run(
            [sys.executable, "-m", "nmt_cli.main", "translate", "-m", str(tiny_model_dir), "--threads", "1"]
            + ["--split", split],
            input="\n".join(paragraphs) + "\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        said[split] = run.stdout.split("\n")[: len(paragraphs)]
    # sent together, so the batcher sees requests with different options side by side
    asked = [
        ThreadPoolExecutor(1).submit(server.translate, paragraphs, **fields)
        for fields in ({"split": "none"}, {}, {"split": "sentence"})
    ]
    (s1, whole), (s2, default), (s3, split) = [f.result(60) for f in asked]
    assert s1 == s2 == s3 == 200
    texts = [[t["text"] for t in body["translations"]] for body in (whole, default, split)]
    assert texts == [said["none"], said["sentence"], said["sentence"]]


def test_info_of_an_average_says_what_it_is() -> None:
    """/info is `nmt info --json`: an average of checkpoints, its steps, not validated."""
    s = Server(ROOT / "tests" / "fixtures" / "averaged")
    try:
        status, info = s.request("GET", "/info")
    finally:
        assert s.stop() == 0
    assert status == 200 and info["averaged"] == {"checkpoints": 2, "steps": [4, 8], "validated": False}
    assert (info["step"], info["epoch"], info["valid"]) == (None, None, None)


def test_health_info_openapi(server: Server) -> None:
    assert server.request("GET", "/health") == (200, {"status": "ok"})
    status, info = server.request("GET", "/info")
    assert status == 200 and info["kind"] == "model"
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.") and set(spec["paths"]) >= {"/translate", "/health"}
    status, body = server.request("GET", "/nowhere")
    assert status == 404 and "error" in body
    status, body = server.request("GET", "/translate")
    assert status == 405 and "error" in body


def test_concurrent_requests_batched_and_in_order(server: Server, expected: dict[str, str]) -> None:
    """200 requests from 20 threads: each gets the translation of its own lines, none lost or mixed up."""
    # lines whose translations differ from every other's, so that a mix-up shows (the tiny model repeats itself)
    counts = Counter(expected[line] for line in SAMPLE)
    pool = [line for line in SAMPLE if counts[expected[line]] == 1]
    assert len(pool) >= 10

    def one(k: int) -> tuple[list[str], int, Any]:
        lines = [pool[(k * 7 + j) % len(pool)] for j in range(1 + k % 3)]
        status, body = server.translate(lines)
        return lines, status, body

    start = time.monotonic()
    with ThreadPoolExecutor(20) as ex:
        results = list(ex.map(one, range(200)))
    elapsed = time.monotonic() - start
    print(f"200 requests from 20 threads: {elapsed:.2f} s")
    assert len(results) == 200
    for lines, status, body in results:
        assert status == 200, body
        assert [t["text"] for t in body["translations"]] == [expected[line] for line in lines]


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b'{"text": ["a"', 400, "not valid JSON"),
        (b'{"text": "caf\xe9"}', 400, "UTF-8"),
        (json.dumps({"text": 3}).encode(), 400, "'text' is int"),
        (json.dumps({"text": ["a", 3]}).encode(), 400, "'text'[1] is int"),
        (json.dumps({"text": []}).encode(), 400, "empty list"),
        (json.dumps({"text": "a", "lang": "fr"}).encode(), 400, "unknown field 'lang'"),
        (json.dumps({"txt": "a"}).encode(), 400, "unknown field 'txt'"),
        (json.dumps({"nbest": 2}).encode(), 400, "'text' is missing"),
        (json.dumps(["a"]).encode(), 400, "JSON object"),
        (json.dumps({"text": "a", "nbest": 6}).encode(), 400, "'nbest' 6"),
        (json.dumps({"text": "a", "nbest": "2"}).encode(), 400, "'nbest' is str"),
        (json.dumps({"text": "a", "beam": 6}).encode(), 400, "'beam' 6: must be from 1 to the server's --beam, 5"),
        (json.dumps({"text": "a", "beam": 0}).encode(), 400, "'beam' 0"),
        (json.dumps({"text": "a", "beam": True}).encode(), 400, "'beam' is bool"),
        (
            json.dumps({"text": "a", "beam": 2, "nbest": 3}).encode(),
            400,
            "'nbest' 3: must be from 1 to the beam size, 2",
        ),
        (json.dumps({"text": "a", "align": "yes"}).encode(), 400, "'align' is str"),
        (json.dumps({"text": "a", "split": "words"}).encode(), 400, "'split' 'words': give 'sentence' or 'none'"),
        (json.dumps({"text": "a\nb"}).encode(), 400, "line break"),
        (json.dumps({"text": ["hello"] * 10_000}).encode(), 413, "10,000 lines"),
        (json.dumps({"text": "a" * 1_000_000}).encode(), 413, "over 1,000,000 bytes"),  # a 1 MB line: body too large
    ],
)
def test_hostile_input_gets_its_status_and_the_server_keeps_serving(
    server: Server, expected: dict[str, str], raw: bytes, status: int, says: str
) -> None:
    got, body = server.request("POST", "/translate", raw=raw)
    assert got == status and says in body["error"], body
    got, body = server.translate(LINES[0])
    assert got == 200 and body["translations"][0]["text"] == expected[LINES[0]]


def test_body_larger_than_its_content_length_is_refused(server: Server) -> None:
    """The limit holds for what comes, not only for what Content-Length says (chunked bodies)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"text": "b" * 1_100_000}).encode()
    conn.request("POST", "/translate", body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]))
    response = conn.getresponse()
    assert response.status == 413 and "bytes" in json.loads(response.read())["error"]
    conn.close()
    assert server.request("GET", "/health") == (200, {"status": "ok"})


def unread_bytes(port: int, clients: list[int]) -> int | None:
    """Bytes that the connections from local ports `clients` to 127.0.0.1:`port` sent and the server has not
    read yet: unacknowledged on the client's socket, or waiting in the server's (accepted or not). Linux shows
    both queues in /proc/net/tcp; None while a connection is missing from it."""
    queued: dict[tuple[int, int], int] = {}  # (local port, remote port) -> bytes
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, _, queues = row.split()[1:5]
        tx, rx = (int(n, 16) for n in queues.split(":"))
        queued[int(local.split(":")[1], 16), int(remote.split(":")[1], 16)] = tx + rx
    pairs = [(client, port) for client in clients] + [(port, client) for client in clients]
    if not all(pair in queued for pair in pairs):
        return None
    return sum(queued[pair] for pair in pairs)


def test_sigterm_answers_the_requests_in_flight_and_exits_0(tiny_model_dir: Path, expected: dict[str, str]) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux's /proc/net/tcp to see that the server has read the requests")
    # a long wait keeps the first batch open, so all 20 requests are in flight when SIGTERM comes
    server = Server(tiny_model_dir, "--max-wait-ms", "1500")
    sent = threading.Barrier(21)
    lines = [f"The dog number {i} runs." for i in range(20)]
    clients: list[int] = []  # the local ports of the 20 connections
    terminated = False

    def one(i: int) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", "/translate", body=json.dumps({"text": [lines[i], LINES[0]]}).encode())
            assert conn.sock is not None
            clients.append(conn.sock.getsockname()[1])
            sent.wait()
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    try:
        with ThreadPoolExecutor(20) as ex:
            futures = [ex.submit(one, i) for i in range(20)]
            sent.wait()
            deadline = time.monotonic() + 30
            while unread_bytes(server.port, clients) != 0:  # the server has read every request: all are in flight
                assert time.monotonic() < deadline, (
                    f"the server has not read the requests: {unread_bytes(server.port, clients)}"
                )
                time.sleep(0.005)
            server.proc.send_signal(signal.SIGTERM)
            terminated = True
            results = [f.result() for f in futures]
    finally:
        code = server.stop(signal_first=not terminated)
    assert code == 0
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        assert [t["text"] for t in body["translations"]] == [expected[lines[i]], expected[LINES[0]]]


class FakeTranslator(LineTranslator):
    """Upper-cases lines; a line 'boom' raises."""

    max_src_tokens = 100

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def translate_batch(self, lines: list[str], warn: Any = None, first_line: int = 1, where: str = "") -> list[Any]:
        self.calls.append(list(lines))
        if "boom" in lines:
            raise ValueError("boom")
        return [Translation(line.upper(), 0.0, [(line.upper(), 0.0, 0.0)]) for line in lines]


@pytest.mark.unit
def test_batcher_batches_and_isolates_a_failing_request() -> None:
    fake = FakeTranslator()
    batcher = Batcher(fake, Limits(max_lines=8, max_wait_ms=200))
    futures = [batcher.submit(lines) for lines in (["a", "b"], ["boom"], ["c"], ["d", "e", "f", "g", "h"])]
    assert [t.text for t in futures[0].result(5)] == ["A", "B"]
    with pytest.raises(ValueError, match="boom"):
        futures[1].result(5)
    assert [t.text for t in futures[2].result(5)] == ["C"]
    assert [t.text for t in futures[3].result(5)] == ["D", "E", "F", "G", "H"]
    # one batch of the first three (the fourth is over the line budget), then each alone, then the fourth
    assert fake.calls[0] == ["a", "b", "boom", "c"]
    assert fake.calls[-1] == ["d", "e", "f", "g", "h"]
    late = batcher.submit(["z"])
    batcher.close(5)
    assert [t.text for t in late.result(0)] == ["Z"]  # closing drains the queue
    with pytest.raises(RuntimeError, match="shutting down"):
        batcher.submit(["y"])


def test_without_starlette_it_says_what_to_install(tiny_model_dir: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; from nmt_cli.main import main; "
        f"sys.argv = ['nmt', 'serve', '-m', {str(tiny_model_dir)!r}]; main()"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "pip install 'nmt[serve]'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_error_line(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "nmt_cli.main", "serve", "-m", str(tiny_model_dir), "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert run.returncode == 2
    message = f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port or --host"
    assert run.stderr.strip() == message


@pytest.mark.unit
def test_alignment_is_refused_where_the_engine_gives_none() -> None:
    with pytest.raises(RequestError) as refused:
        parse_request(b'{"text": "a", "align": true}', max_lines=8, max_beam=5, can_align=False)
    assert refused.value.status == 400 and "CTranslate2" in refused.value.message
    asked = parse_request(b'{"text": ["a", "b"], "beam": 2, "nbest": 2}', max_lines=8, max_beam=5, can_align=False)
    assert asked.lines == ["a", "b"] and asked.nbest == 2 and asked.options == Options(2, False)


@pytest.mark.unit
def test_the_listening_socket_turns_nagle_off() -> None:
    """Without TCP_NODELAY on the listener (socket.create_server makes proto-0 sockets, on which asyncio does
    not set it), Nagle's algorithm and delayed ACKs added ~45 ms to every answer."""
    from nmt_cli.serve import listen

    with listen("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with socket.create_connection(sock.getsockname()) as client:
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert client.fileno() > 0


@pytest.mark.integration
def test_openapi_describes_every_route_with_the_servers_own_limits() -> None:
    """The document is made from the types that check requests: it lists the app's routes, its references
    resolve, and the request schema carries this server's limits."""
    from nmt.config import DecodeConfig
    from nmt.serve import create_app
    from nmt.serve.protocol import openapi

    fake = FakeTranslator()
    fake.config = DecodeConfig(beam_size=4)
    limits = Limits(max_lines=8)
    app = create_app(SimpleNamespace(translator=fake, info={"kind": "fake"}), limits)
    try:
        spec = openapi(limits, 4)
        routes = {(route.path, method) for route in app.routes for method in route.methods if method != "HEAD"}
        assert routes == {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
        refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(spec)))
        assert {"Request", "Translations", "Error"} <= refs <= set(spec["components"]["schemas"])
        request = spec["components"]["schemas"]["Request"]
        assert request["additionalProperties"] is False and request["required"] == ["text"]
        assert request["properties"]["beam"]["maximum"] == request["properties"]["beam"]["default"] == 4
        assert max(form.get("maxItems", 0) for form in request["properties"]["text"]["oneOf"]) == 8
    finally:
        app.state.batcher.close(5)


@pytest.mark.unit
def test_answers_have_the_shape_the_document_gives() -> None:
    from pydantic import TypeAdapter

    from nmt.serve.protocol import Translations, answer

    found = [
        Translation("A B", -0.5, [("A B", -0.5, -1.0), ("A", float("-inf"), -2.0)], alignment="0-0 1-1"),
        Translation("C", float("nan"), [("C", float("nan"), 0.0)]),
    ]
    body = answer(found, nbest=1)
    assert TypeAdapter(Translations).validate_python(body, strict=True) == body
    assert "warnings" not in body
    cut = Translation("D", -1.0, [("D", -1.0, -1.0)], warnings=("300 tokens, longer than the model takes",))
    warned = answer([found[0], cut], nbest=1)
    assert TypeAdapter(Translations).validate_python(warned, strict=True) == warned
    assert warned["warnings"] == ["line 2: 300 tokens, longer than the model takes"]
    first, second = body["translations"]
    assert len(first["nbest"]) == 1 and first["alignment"] == "0-0 1-1"
    assert second["score"] is None and "alignment" not in second  # not finite: null; not asked: absent
    json.dumps(body, allow_nan=False)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"max_lines": 0}, "max_lines 0: must be at least 1"),
        ({"batch_tokens": -5}, "batch_tokens -5: must be at least 1"),
        ({"max_wait_ms": -1.0}, "max_wait_ms -1: must be at least 0"),
        ({"max_wait_ms": float("nan")}, "max_wait_ms nan: must be at least 0"),
    ],
)
def test_limits_check_themselves_when_made(values: dict[str, Any], says: str) -> None:
    from nmt.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        Limits(**values)
    assert str(refused.value) == says
    assert Limits(max_lines=1, max_body_bytes=1, max_wait_ms=0.0, batch_tokens=1).max_wait_ms == 0.0
