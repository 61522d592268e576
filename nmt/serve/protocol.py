"""What `nmt serve` speaks: the /translate request and the responses, declared once as pydantic types that both
check each request (`parse_request`) and make the OpenAPI document (`openapi`), and the one-line errors a
client reads when a request is refused.

Knows nothing about the batcher's queue, Starlette or the model: bytes in, a checked `Asked` or a
`RequestError` out; `Translation`s in, JSON-ready dicts out. Pydantic is imported here only, so that
`nmt translate` never loads it (tests/test_startup.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, NotRequired, cast, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from nmt.config import DecodeConfig
from nmt.documents import FORMATS
from nmt.line_translator import Translation
from nmt.serve.batcher import Limits, Options

FIELDS = ("text", "beam", "nbest", "align", "split", "format")  # the fields of a /translate request, in order
DOCUMENTS = tuple(fmt for fmt in FORMATS if fmt != "text")  # formats whose 'text' is a whole document


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Asked:
    """A checked /translate request."""

    lines: list[str]  # a document's request: one, the whole document
    nbest: int
    options: Options
    format: str = "text"


# ---------------------------------------------------------------------------------------------
# The request

Line = Annotated[str, StringConstraints(pattern=r"^[^\r\n]*$")]  # one line: a line break would shift the answers


def _text_kind(value: Any) -> str | None:
    """Which form of 'text' a value is meant as, so that a wrong one is refused in that form's own terms."""
    return "line" if isinstance(value, str) else "lines" if isinstance(value, list) else None


def _across_fields(can_align: bool) -> Callable[[Any], Any]:
    """The checks no single field can make: an n-best list no longer than the beam, and an alignment only
    where the engine gives one."""

    def check(request: Any) -> Any:
        if request.nbest > request.beam:
            raise PydanticCustomError("nbest_over_beam", "nbest over the beam size")
        if request.align and not can_align:
            raise PydanticCustomError("cannot_align", "this engine gives no alignment")
        return request

    return check


def _one_of(words: tuple[str, ...]) -> Any:
    """The Literal type of one of `words` (made from the tuple that names them, not a second list)."""
    return cast(Any, Literal)[words]


def _split() -> Any:
    """DecodeConfig.split's choices, or None: the server's."""
    return get_type_hints(DecodeConfig)["split"] | None


@cache
def request_schema(max_lines: int, max_beam: int, can_align: bool) -> type[BaseModel]:
    """The /translate body a server with these limits takes (made once for each). Strict: no value is
    converted (a "2" is not a 2, a true not a 1)."""
    lines = Annotated[list[Line], Tag("lines"), Field(min_length=1, max_length=max_lines)]
    text = Annotated[Annotated[Line, Tag("line")] | lines, Discriminator(_text_kind)]
    split = _split()
    return create_model(
        "Request",
        __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
        __validators__=cast(
            dict[str, Any], {"across_fields": model_validator(mode="after")(_across_fields(can_align))}
        ),
        text=(text, Field(description="One line, or a list of lines (no line breaks inside a line).")),
        beam=(
            int,
            Field(
                max_beam,
                ge=1,
                le=max_beam,
                description="Beam size (1: greedy search); at most the server's --beam.",
            ),
        ),
        nbest=(
            int,
            Field(1, ge=1, le=max_beam, description="How many of the best translations to list; at most the beam."),
        ),
        align=(
            bool,
            Field(
                False,
                description="Add the source-target word alignment (Pharaoh 'i-j', 0-based words) of the best "
                "translation; PyTorch engine only.",
            ),
        ),
        split=(
            split,
            Field(
                None,
                description="'sentence': translate each sentence of a line and join them back; 'none': a line "
                "is one sentence. Default: the server's (--split).",
            ),
        ),
        format=(
            _one_of(FORMATS),
            Field(
                "text",
                description="'text': lines, as above. 'markdown', 'html', 'srt' or 'vtt': 'text' is one whole "
                "document (a DocumentRequest), answered in the same format (a TranslatedDocument).",
            ),
        ),
    )


@cache
def document_schema(max_beam: int) -> type[BaseModel]:
    """The /translate body of a document: one string, line breaks and all, in one of DOCUMENTS."""
    return create_model(
        "DocumentRequest",
        __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
        text=(str, Field(description="The whole document, line breaks and all.")),
        beam=(int, Field(max_beam, ge=1, le=max_beam, description="Beam size; at most the server's --beam.")),
        nbest=(Literal[1], Field(1, description="A document comes back whole: one translation.")),
        align=(Literal[False], Field(False, description="No alignment: the document comes back whole.")),
        split=(_split(), Field(None, description="As for lines: what each piece of text is cut into.")),
        format=(
            _one_of(DOCUMENTS),
            Field(description="What the document is; the answer's `document` is in the same format."),
        ),
    )


def parse_request(body: bytes, max_lines: int, max_beam: int, can_align: bool = True) -> Asked:
    """The lines and options of a /translate body, or a RequestError (400, or 413 for too many lines).
    The beam is the server's (`max_beam`) unless the request asks for a smaller one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not valid UTF-8 (byte {e.start}); send UTF-8 JSON") from e
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"the body is not valid JSON ({e})") from e
    if isinstance(data, dict) and data.get("format") in DOCUMENTS:
        return _document(cast(dict[str, Any], data), max_beam)
    try:
        asked = request_schema(max_lines, max_beam, can_align).model_validate(data)
    except ValidationError as e:
        raise _refusal(e.errors(include_url=False), data, max_lines, max_beam) from e
    fields = asked.model_dump()
    lines = [fields["text"]] if isinstance(fields["text"], str) else fields["text"]
    return Asked(lines, fields["nbest"], Options(fields["beam"], fields["align"], fields["split"]))


def _document(data: dict[str, Any], max_beam: int) -> Asked:
    """A document's request, checked: its text one string, and nothing that describes lines."""
    try:
        checked = document_schema(max_beam).model_validate(data).model_dump()
    except ValidationError as e:
        raise _document_refusal(e.errors(include_url=False), data, max_beam) from e
    return Asked([checked["text"]], 1, Options(checked["beam"], False, checked["split"]), checked["format"])


def _document_refusal(errors: list[ErrorDetails], data: dict[str, Any], max_beam: int) -> RequestError:
    error = min(errors, key=lambda e: _ORDER.index(_about(e)))
    about, fmt = _about(error), data["format"]
    if about in ("nbest", "align") and error["type"] == "literal_error":
        return RequestError(400, f"'{about}' describes lines; a document ({fmt}) comes back whole, in one translation")
    if about in ("missing", "text"):
        said = "missing" if about == "missing" else type(data["text"]).__name__
        return RequestError(400, f"'text' is {said}: give the whole {fmt} document as one string")
    return _refusal(errors, data, 1, max_beam)


# What a request's faults are told under, in the order they are told (the first only): the body's shape, then
# the fields as listed, and within 'text' its form before its lines' contents. A check across fields (pydantic
# runs it only when every field is valid) is told under the field it refuses.
_ORDER = (
    "model_type",
    "extra_forbidden",
    "missing",
    "text",
    "text:line",
    "beam",
    "nbest",
    "align",
    "split",
    "format",
)
_ACROSS = {"nbest_over_beam": "nbest", "cannot_align": "align"}


def _about(error: ErrorDetails) -> str:
    """What an error of pydantic's is about, one of `_ORDER`."""
    kind, loc = error["type"], error["loc"]
    if kind in _ACROSS:
        return _ACROSS[kind]
    if not loc or kind in ("extra_forbidden", "missing"):
        return kind
    return "text:line" if kind == "string_pattern_mismatch" else str(loc[0])


def _refusal(errors: list[ErrorDetails], data: Any, max_lines: int, max_beam: int) -> RequestError:
    """The first of pydantic's errors (in `_ORDER`), said as one line for the client."""
    # min keeps the first of equals: pydantic lists a list's items in order
    error = min(errors, key=lambda e: _ORDER.index(_about(e)))
    about, kind, value = _about(error), error["type"], error["input"]
    name = type(value).__name__
    if about == "model_type":
        return RequestError(400, 'the body must be a JSON object: {"text": "a line"} or {"text": ["line", ...]}')
    if about == "extra_forbidden":
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        return RequestError(
            400, f"unknown field {', '.join(map(repr, unknown))}; the fields are {', '.join(map(repr, FIELDS))}"
        )
    if about == "missing":
        return RequestError(400, "'text' is missing: give a string (one line) or a list of strings")
    if about.startswith("text"):
        return _text_refusal(error, max_lines)
    if about == "format":
        return RequestError(400, f"'format' {value!r}: choose {', '.join(map(repr, FORMATS))}")
    if kind in ("int_type", "bool_type"):
        return RequestError(
            400, f"'{about}' is {name}: " + ("give true or false" if about == "align" else "give an integer")
        )
    fields = cast(dict[str, Any], data)
    if about == "split":
        return RequestError(400, f"'split' {value!r}: give 'sentence' or 'none'")
    if about == "beam":
        return RequestError(400, f"'beam' {value}: must be from 1 to the server's --beam, {max_beam}")
    if about == "nbest":
        return RequestError(
            400, f"'nbest' {fields['nbest']}: must be from 1 to the beam size, {fields.get('beam', max_beam)}"
        )
    return RequestError(400, "'align': this server's engine (CTranslate2) gives no attention to align with")


def _text_refusal(error: ErrorDetails, max_lines: int) -> RequestError:
    kind, loc, value = error["type"], error["loc"], error["input"]
    where = "'text'" if len(loc) < 3 else f"'text'[{loc[2]}]"  # ('text', form) or ('text', 'lines', index)
    if kind == "string_pattern_mismatch":
        return RequestError(400, f"{where} holds a line break: send one line per list item")
    if kind == "too_short":
        return RequestError(400, "'text' is an empty list: give at least one line")
    if kind == "too_long":
        return RequestError(413, f"{len(value):,} lines: at most {max_lines:,} per request; split them")
    if len(loc) == 3:
        return RequestError(400, f"{where} is {type(value).__name__}: every line must be a string")
    return RequestError(400, f"'text' is {type(value).__name__}: give a string or a list of strings")


# ---------------------------------------------------------------------------------------------
# The responses


class Hypothesis(TypedDict):
    text: str
    score: Annotated[float | None, Field(description="The search score (length-normalised); null if not finite")]
    log_prob: float | None


class TranslatedLine(TypedDict):
    text: str
    score: float | None
    nbest: list[Hypothesis]
    alignment: NotRequired[Annotated[str, Field(description="When asked: 'i-j' pairs")]]


class Translations(TypedDict):
    translations: Annotated[list[TranslatedLine], Field(description="One a line, in the order of the request's lines")]
    warnings: NotRequired[
        Annotated[
            list[str],
            Field(
                description="What was done to translate a line, naming it (1-based): 'line 2: 1300 tokens, "
                "longer than the model takes; translated in 2 parts'. Absent when nothing was."
            ),
        ]
    ]


class TranslatedDocument(TypedDict):
    document: Annotated[str, Field(description="The document translated, in the request's format and shape")]
    warnings: NotRequired[
        Annotated[
            list[str],
            Field(
                description="What was done to read or translate it, naming the document's line: 'line 12: a "
                "broken cue timing line; kept as it is, the cue's text translated'. Absent when nothing was."
            ),
        ]
    ]


def document_answer(document: str, warnings: list[str]) -> TranslatedDocument:
    """The /translate response body for a document."""
    body = TranslatedDocument(document=document)
    if warnings:
        body["warnings"] = warnings
    return body


class Health(TypedDict):
    status: str


class Error(TypedDict):
    error: str


def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in cast(list[Any], value)]
    return value


def answer(translations: list[Translation], nbest: int) -> Translations:
    """The /translate response body."""

    def one(t: Translation) -> TranslatedLine:
        found = TranslatedLine(
            text=t.text,
            score=finite(t.score),
            nbest=[
                Hypothesis(text=text, score=finite(score), log_prob=finite(log_prob))
                for text, score, log_prob in t.nbest[:nbest]
            ],
        )
        if t.alignment is not None:
            found["alignment"] = t.alignment
        return found

    body = Translations(translations=[one(t) for t in translations])
    warnings = [f"line {i}: {warning}" for i, t in enumerate(translations, start=1) for warning in t.warnings]
    if warnings:
        body["warnings"] = warnings
    return body


# ---------------------------------------------------------------------------------------------
# The OpenAPI document


def _reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi(limits: Limits, beam: int, can_align: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the server; its schemas are made from the types above."""
    request, document = request_schema(limits.max_lines, beam, can_align), document_schema(beam)
    types = (request, document, Translations, TranslatedDocument, Health, Error)
    _, schemas = TypeAdapter.json_schemas(
        [(t, "validation", TypeAdapter(t)) for t in types],
        ref_template="#/components/schemas/{model}",
    )
    refused = {
        "400": _reply("Invalid JSON or UTF-8, wrong types, unknown fields, an empty list", _ref("Error")),
        "413": _reply(
            f"More than {limits.max_lines} lines, or a body over {limits.max_body_bytes} bytes", _ref("Error")
        ),
        "500": _reply("The translation failed", _ref("Error")),
        "503": _reply("The server is shutting down", _ref("Error")),
    }
    translate = {
        "summary": "Translate one line or a list of lines (one translation per line, in order), or a whole "
        "document (Markdown, HTML, SRT, WebVTT: the same document back, translated)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [_ref("Request"), _ref("DocumentRequest")]}},
            },
        },
        "responses": {
            "200": _reply(
                "The translations, or the translated document",
                {"oneOf": [_ref("Translations"), _ref("TranslatedDocument")]},
            ),
            **refused,
        },
    }
    html = {"200": {"description": "The page", "content": {"text/html": {}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "nmt serve", "version": "1", "description": "Translate lines with an nmt model."},
        "paths": {
            "/translate": {"post": translate},
            "/": {"get": {"summary": "A web page to translate with (HTML)", "responses": html}},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": _reply("Serving", _ref("Health"))}}},
            "/info": {
                "get": {
                    "summary": "The model's description (as `nmt info --json`)",
                    "responses": {"200": _reply("The description", {"type": "object"})},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _reply("OpenAPI 3", {"type": "object"})}}
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }
