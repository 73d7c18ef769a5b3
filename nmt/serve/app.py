"""The HTTP API and web page (FastAPI), over a :class:`Batcher` and a translation service.

- ``POST /translate`` ``{"text": ["sentence", ...], "beam": 5, "length_penalty": 1.0,
  "attention": false}`` -> ``{"translations": ["...", ...]}`` in the same order (plus
  ``"attention"`` for one sentence when asked and the model has attention). Optional:
  ``"glossary"`` (``[[source, target], ...]`` or ``{source: target}``: the outputs use
  the target terms of the source terms they contain), ``"prefix"`` (one target prefix
  per sentence), ``"scores": true`` (-> ``"scores"``: ``[total, per token]`` log-probs
  per sentence) and ``"alignments": true`` (-> ``"alignments"``: ``[[i, j], ...]`` word
  links per sentence); glossaries, scores and alignments need the PyTorch model. They
  combine with ``"markup": "xml" | "html"`` (inline tags and placeholders kept): terms
  match the text without its markup, alignments link its plain words;
  ``"tgt_lang"``: the target language (a multilingual model needs one unless the server
  was started with ``--tgt-lang``; a bilingual one takes only its own);
- ``GET /health`` -> status, model, engine, queue and limits;
- ``GET /`` -> a self-contained page (no external resources) to type and translate.

Every refusal is a JSON ``{"error": "..."}`` with a 4xx status (503 when the queue is
full); nothing a client sends can stop the server. The body is read with a size cap
before it is parsed, so an oversized request costs at most ``max_body_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from nmt.errors import UsageError
from nmt.inference.glossary import Glossary
from nmt.serve.batcher import Batcher, QueueFull
from nmt.serve.page import page_html
from nmt.serve.service import (
    ATTENTION,
    GUIDED,
    MARKUP,
    TRANSLATE,
    GuidedLine,
    Settings,
    TranslationService,
)

log = logging.getLogger("nmt.serve")
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there


@dataclass
class ServeLimits:
    """What one request and the whole queue may hold."""

    max_body_bytes: int = 256 * 1024
    max_sentences: int = 64  # per request
    max_chars: int = 2000  # per sentence
    max_queue: int = 1024  # sentences waiting in the server
    max_beam: int = 16
    max_batch: int = 64  # sentences gathered into one search
    max_wait_ms: float = 5.0  # how long the first request waits for others


class ApiError(Exception):
    """A refused request: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class TranslateRequest(BaseModel):
    """The body of ``POST /translate`` (strict: no string for a number, no unknown key)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: list[str]
    beam: int | None = Field(default=None, ge=1)
    length_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    attention: bool = False
    glossary: list[list[str]] | dict[str, str] | None = None
    prefix: list[str] | None = None
    scores: bool = False
    alignments: bool = False
    markup: Literal["xml", "html"] | None = None  # keep inline tags and placeholders
    tgt_lang: str | None = None  # target language (multilingual models)

    @property
    def guided(self) -> bool:
        return bool(self.glossary or self.prefix or self.scores or self.alignments)


def create_app(service: TranslationService, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI application; the batcher's worker runs while the app is up."""
    limits = limits or ServeLimits()
    batcher = Batcher(service.run, limits.max_batch, limits.max_wait_ms / 1000, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="nmt", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher, app.state.service = batcher, service
    _error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page_html()

    @app.get("/health")
    async def health() -> dict:
        return _health(service, batcher, limits)

    @app.post("/translate")
    async def translate(request: Request) -> dict:
        check_content_type(request)
        req = parse_request(await read_body(request, limits.max_body_bytes), limits)
        settings = _settings(req, service)
        if req.guided:
            answer = await _guided(batcher, service, settings, req, request)
        elif req.markup:
            key = (MARKUP, settings, req.markup)
            answer = {"translations": await _queued(batcher, key, req.text, request)}
        else:
            key = (TRANSLATE, settings)
            answer = {"translations": await _queued(batcher, key, req.text, request)}
        if req.attention:
            maps = await _queued(batcher, (ATTENTION, settings.tgt_lang), req.text, request)
            answer["attention"] = maps[0]
        return answer

    return app


def _settings(req: TranslateRequest, service: TranslationService) -> Settings:
    """The request's search settings and target language, the model's defaults where it
    names none; a target language the model does not have is a 422 naming its languages."""
    defaults = service.defaults
    try:
        target = service.target(req.tgt_lang)
    except UsageError as e:
        raise ApiError(422, str(e)) from None
    return Settings(
        req.beam if req.beam is not None else defaults.beam,
        req.length_penalty if req.length_penalty is not None else defaults.length_penalty,
        target,
    )


async def _guided(
    batcher: Batcher,
    service: TranslationService,
    settings: Settings,
    req: TranslateRequest,
    request: Request,
) -> dict[str, Any]:
    """Translations with glossary and prefixes, plus the scores and alignments asked for
    (with the request's markup, if any, taken out and put back)."""
    _check_guided(req, service)
    glossary = _glossary(req.glossary)
    prefixes = req.prefix or [""] * len(req.text)
    lines = [GuidedLine(t, p, glossary) for t, p in zip(req.text, prefixes)]
    key = (GUIDED, settings, req.alignments, req.markup or "off")
    results = await _queued(batcher, key, lines, request)
    answer: dict[str, Any] = {"translations": [r["translation"] for r in results]}
    if req.scores:
        answer["scores"] = [r["scores"] for r in results]
    if req.alignments:
        answer["alignments"] = [r["alignment"] for r in results]
    return answer


def _check_guided(req: TranslateRequest, service: TranslationService) -> None:
    if req.prefix is not None and len(req.prefix) != len(req.text):
        raise ApiError(
            422, f"prefix: {len(req.prefix)} prefixes for {len(req.text)} sentences; give one each"
        )
    if service.engine != "pytorch":
        for name in ("glossary", "scores", "alignments"):
            if getattr(req, name):
                raise ApiError(422, f"{name}: needs the PyTorch model; this server runs an export")
    if req.alignments and not service.has_attention:
        raise ApiError(422, "alignments: this model has no attention to align with")


def _glossary(terms: list[list[str]] | dict[str, str] | None) -> Glossary | None:
    """The request's glossary; a bad entry is a 422 naming it."""
    if not terms:
        return None
    pairs = list(terms.items()) if isinstance(terms, dict) else terms
    for n, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ApiError(422, f"glossary.{n}: expected [source, target], got {len(pair)} items")
    try:
        return Glossary.from_pairs([(a, b) for a, b in pairs], "glossary")
    except UsageError as e:
        raise ApiError(422, str(e)) from None


async def _queued(batcher: Batcher, key: tuple, lines: list[Any], request: Request) -> list:
    """Queue ``lines`` under ``key`` (kind of work, settings...) and wait for them; a client
    that hangs up meanwhile has its job dropped from the queue (cancelled: the worker skips
    it), not translated for nobody."""
    if not lines:
        return []
    try:
        future = asyncio.wrap_future(batcher.submit(key, lines))
    except QueueFull as e:
        raise ApiError(503, f"server busy: {e}; retry later") from None
    try:  # a cancelled handler cancels the job through the wrapped future
        while not (await asyncio.wait({future}, timeout=DISCONNECT_POLL_S))[0]:
            if await request.is_disconnected():
                future.cancel()
                raise ApiError(499, "client closed the request")
        return future.result()
    finally:
        future.cancel()  # no effect once done


def _health(service: TranslationService, batcher: Batcher, limits: ServeLimits) -> dict:
    return {
        "status": "ok",
        "model": service.name,
        "engine": service.engine,
        "attention": service.has_attention,
        "languages": list(service.languages),  # a multilingual model's target languages
        "search": asdict(service.default_settings()),
        "waiting": batcher.waiting,
        "batches": batcher.batches,
        "sentences": batcher.sentences,
        "limits": asdict(limits),
    }


# --- request checking -----------------------------------------------------------------------


def check_content_type(request: Request) -> None:
    """Only ``application/json``: a browser sends a cross-site ``text/plain`` or form POST
    without asking first (no CORS preflight), so any page could make the server work."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not '{media or 'none'}'")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes")
    return bytes(body)


def parse_request(body: bytes, limits: ServeLimits) -> TranslateRequest:
    """Parse and check a ``/translate`` body; every problem is an :class:`ApiError`."""
    if not body.strip():
        raise ApiError(400, 'empty body: send a JSON object such as {"text": ["Hallo Welt."]}')
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, 'the body must be a JSON object with a "text" list of strings')
    try:
        req = TranslateRequest.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, _first_problem(e)) from None
    _check_sizes(req, limits)
    return req


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "body"
    return f"{where}: {problem['msg']}"


def _check_sizes(req: TranslateRequest, limits: ServeLimits) -> None:
    if len(req.text) > limits.max_sentences:
        raise ApiError(
            413, f"{len(req.text)} sentences in one request; at most {limits.max_sentences}"
        )
    for i, line in enumerate(req.text):
        if len(line) > limits.max_chars:
            raise ApiError(413, f"text.{i} has {len(line)} characters; at most {limits.max_chars}")
        if not line.isascii() and not _is_unicode(line):
            raise ApiError(422, f"text.{i} holds a lone surrogate (\\ud800-\\udfff escape)")
    if req.beam is not None and req.beam > limits.max_beam:
        raise ApiError(422, f"beam: at most {limits.max_beam}, got {req.beam}")
    if req.attention and len(req.text) != 1:
        raise ApiError(422, "attention: ask for it with exactly one sentence in text")


def _is_unicode(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _error_handlers(app: FastAPI) -> None:
    """Every error, including unknown paths and methods, answers ``{"error": ...}``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
