"""`nmt serve` with "format": a whole document in, the same document back translated, as
`nmt.load(...).translate_document` gives it; the options that describe lines are refused in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LINES, Server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("webvtt", reason="webvtt-py is not installed (pip install -e '.[dev]')")

from nmt.serve.batcher import Limits  # noqa: E402
from nmt.serve.protocol import RequestError, openapi, parse_request  # noqa: E402

pytestmark = pytest.mark.system

FIXTURES = Path(__file__).parent / "fixtures" / "documents"
STORY = (FIXTURES / "lighthouse.srt").read_text(encoding="utf-8")
SCENE = (FIXTURES / "harbour.vtt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[Server]:
    s = Server(tiny_model_dir, "--beam", "3", "--max-lines", "16")  # fewer lines than the story's sentences
    yield s
    assert s.stop() == 0


def test_a_document_comes_back_as_the_api_translates_it(server: Server, tiny_model_dir: Path) -> None:
    import nmt

    loaded = nmt.load(tiny_model_dir, beam_size=3, threads=1)
    for document, fmt in ((STORY, "srt"), (SCENE, "vtt")):
        status, body = server.translate(document, format=fmt)
        assert status == 200, body
        assert body == {"document": loaded.translate_document(document, fmt)}  # and no warnings
    status, body = server.translate(LINES, format="text")  # "text" is the lines as before
    assert status == 200 and len(body["translations"]) == len(LINES)


def test_a_malformed_document_is_translated_and_its_warnings_name_the_line(server: Server) -> None:
    status, body = server.translate("WEBVTT\n\n00:01.000 -> 00:02.000\nHello there.\n", format="vtt", beam=2)
    assert status == 200 and body["document"].startswith("WEBVTT\n\n00:01.000 -> 00:02.000\n")
    assert body["warnings"] == ["line 3: a broken cue timing line; kept as it is, the cue's text translated"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"text": STORY, "format": "srt", "nbest": 2}, 400, "'nbest' describes lines; a document (srt) comes back"),
        ({"text": STORY, "format": "srt", "align": True}, 400, "'align' describes lines"),
        ({"text": [STORY], "format": "srt"}, 400, "'text' is list: give the whole srt document as one string"),
        ({"format": "vtt"}, 400, "'text' is missing: give the whole vtt document as one string"),
        ({"text": "x", "format": "docx"}, 400, "'format' 'docx': choose 'text', 'markdown', 'html', 'srt', 'vtt'"),
        ({"text": "x", "format": "srt", "beam": 9}, 400, "'beam' 9: must be from 1 to the server's --beam, 4"),
        ({"text": "x", "format": "srt", "extra": 1}, 400, "unknown field 'extra'"),
        ({"text": "a\nb", "format": "text"}, 400, "'text' holds a line break"),
    ],
)
def test_document_requests_are_checked_in_one_line(fields: dict, status: int, says: str) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request(json.dumps(fields).encode(), 8, 4)
    assert refused.value.status == status and refused.value.message.startswith(says), refused.value.message


@pytest.mark.unit
def test_a_document_request_keeps_its_line_breaks_and_the_openapi_describes_it() -> None:
    asked = parse_request(json.dumps({"text": SCENE, "format": "vtt", "beam": 2}).encode(), 8, 4)
    assert asked.lines == [SCENE] and asked.format == "vtt" and asked.options.beam == 2 and asked.nbest == 1
    spec = openapi(Limits(max_lines=8), 4)
    schemas = spec["components"]["schemas"]
    assert schemas["DocumentRequest"]["properties"]["format"]["enum"] == ["markdown", "html", "srt", "vtt"]
    assert "pattern" not in json.dumps(schemas["DocumentRequest"]["properties"]["text"])
    assert schemas["Request"]["properties"]["format"]["default"] == "text"
    body = spec["paths"]["/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {
        "oneOf": [{"$ref": "#/components/schemas/Request"}, {"$ref": "#/components/schemas/DocumentRequest"}]
    }
    assert "TranslatedDocument" in schemas
