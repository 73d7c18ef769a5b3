"""``nmt serve MODEL``: load any model (run dir, checkpoint, exported dir), run uvicorn.

FastAPI gives request parsing, JSON errors and an ASGI app that tests drive without a
socket; uvicorn is the ASGI server it is usually deployed with. The socket is bound here,
before uvicorn starts, so a busy port is a one-line ``error:`` like any other.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from nmt.config import ConfigError
from nmt.inference.load import TranslateOptions, open_translator
from nmt.serve.app import ServeLimits, create_app
from nmt.serve.service import TranslationService

log = logging.getLogger("nmt.serve")


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    beam: int | None = None
    batch_size: int | None = None
    max_wait_ms: float = 5.0
    device: str = "auto"
    quantization: str = "none"
    tgt_lang: str | None = None  # default target language of a multilingual model


def load_service(model: Path, opts: ServeOptions) -> TranslationService:
    options = TranslateOptions(
        beam=opts.beam, batch_size=opts.batch_size, device=opts.device,
        quantization=opts.quantization, tgt_lang=opts.tgt_lang,
    )  # fmt: skip
    translator = open_translator(model, options)  # the target: per request
    return TranslationService(translator, Path(model).name, opts.tgt_lang)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (OSError, e.g. address in use, is reported by the CLI)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock


def run_server(model: Path, opts: ServeOptions, limits: ServeLimits | None = None) -> None:
    """Serve until Ctrl-C / SIGTERM."""
    if opts.max_wait_ms < 0:
        raise ConfigError(f"--max-wait-ms must not be negative, got {opts.max_wait_ms}")
    limits = limits or ServeLimits(max_wait_ms=opts.max_wait_ms)
    sock = bind(opts.host, opts.port)  # first: a busy port fails before the model loads
    service = load_service(model, opts)
    host, port = sock.getsockname()[:2]
    log.info("serving %s (%s) on http://%s:%d/", model, service.engine, host, port)
    uvicorn.Server(_uvicorn_config(create_app(service, limits))).run(sockets=[sock])


def _uvicorn_config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on a background thread (tests, benchmarks); yields its base URL."""
    sock = bind(host, port)
    server = uvicorn.Server(_uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
