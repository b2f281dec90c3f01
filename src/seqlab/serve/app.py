"""The HTTP API and the playground: a thin FastAPI facade over the tasks' own code paths.

    GET  /                  the playground (static HTML + JavaScript, nothing from the internet)
    GET  /v1/models         the loaded runs, with their task and endpoints
    POST /generate          language models: a continuation, streamed as server-sent events
    POST /v1/completions    language models, OpenAI-compatible (``stream=true``: SSE chunks)
    POST /score             language models: bits per token and top-k alternatives per position
    POST /inspect           recurrent LMs: activations per layer/unit and gate saturation
    POST /translate         seq2seq runs: n-best translations and the attention matrix
    POST /tag               tagging runs: Viterbi tags and per-token marginals
    POST /predict           any task whose inputs are text: its ``predict``, as ``seqlab predict``
    GET  /docs              the OpenAPI page (/openapi.json is the schema)

Generation goes through one `Batcher` per model (continuous batching), stepped on the event
loop; every other model call runs in one worker thread, one at a time. Errors
are JSON: ``{"error": {"code": 422, "type": "invalid_request_error", "message": "..."}}``; the
limits and what each breach returns are in `seqlab.serve.config`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqlab.config import from_dict
from seqlab.errors import SeqlabError
from seqlab.sampling import SampleConfig
from seqlab.serve import analysis
from seqlab.serve.batching import END, Batcher, Failed, Generation, TimedOut
from seqlab.serve.config import ServeConfig
from seqlab.serve.runs import Served

STATIC = Path(__file__).parent / "static"
ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 408: "timeout_error",
               413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error"}
T = TypeVar("T")


# --- request bodies --------------------------------------------------------------------------
class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled field is a 422, not ignored

    model: str | None = Field(None, description="run name (optional when one run is served)")


class Sampling(Body):
    temperature: float | None = Field(None, ge=0, description="0 is greedy (default: run's)")
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**64 - 1, description="the same seed, the same "
                             "text as `seqlab sample --seed`")


class GenerateRequest(Sampling):
    prompt: str = ""
    max_tokens: int | None = Field(None, ge=0, description="default: the run's sample.length")
    greedy: bool | None = None


class CompletionRequest(Sampling):
    prompt: str = ""
    max_tokens: int = Field(16, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="one completion per request")
    user: str | None = None


class ScoreRequest(Body):
    text: str
    top_k: int = Field(5, ge=1, description="alternatives per position")


class InspectRequest(Body):
    text: str
    layer: int = Field(1, ge=1)
    unit: int = Field(0, ge=0)
    signal: str = Field("h", description="h, or a gate: i f g o c (LSTM), r z n (GRU)")


class TranslateRequest(Body):
    source: str
    strategy: str | None = Field(None, description="beam, greedy or sample")
    beam_size: int | None = None
    n_best: int | None = None
    length_penalty: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


class TagRequest(Body):
    text: str = Field(description="one sentence, whitespace-tokenised")


class PredictRequest(Body):
    inputs: list[str] = Field(description="the lines `seqlab predict` would read, one per item")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="the task's predict options, e.g. sample.* keys for "
        "a language model or steps/seed for music")


# The options that set how much a task generates, held to the server's max_tokens: sample.length
# (language models), steps (music), decode.max_len_b (seq2seq's output limit beyond a * source).
LENGTH_OPTIONS = ("length", "steps", "max_len_b")


# --- errors ----------------------------------------------------------------------------------
def fail(code: int, message: str) -> HTTPException:
    return HTTPException(status_code=code, detail=message)


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "type": ERROR_TYPES.get(code, "error"), "message": message}}


def error_response(code: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=code)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before anything parses it
    (by its Content-Length, or while a chunked body arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(scope, receive, send)
        replayed = False

        async def replay() -> Message:  # the body once, then the real channel (disconnects)
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        msg = f"request body larger than the server's max_body_bytes {self.limit}"
        await error_response(413, msg)(scope, receive, send)


# --- the app ---------------------------------------------------------------------------------
class Server:
    """The loaded runs, their batchers, the worker thread and the limits."""

    def __init__(self, runs: dict[str, Served], limits: ServeConfig) -> None:
        self.runs, self.limits = runs, limits
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqlab-model")
        self.batchers: dict[str, Batcher] = {}
        self.pending = 0  # non-generation model requests running or queued

    def batcher(self, run: Served) -> Batcher:
        if run.name not in self.batchers:
            self.batchers[run.name] = Batcher(run.model)
        return self.batchers[run.name]

    @property
    def streams(self) -> int:
        return sum(b.slots for b in self.batchers.values())

    def run(self, name: str | None, endpoint: str) -> Served:
        if name is None:
            if len(self.runs) > 1:
                raise fail(400, f"model: several runs are served; name one of "
                                f"{', '.join(self.runs)}")
            name = next(iter(self.runs))
        if name not in self.runs:
            raise fail(404, f"model {name!r} not found; served: {', '.join(self.runs)}")
        run = self.runs[name]
        if endpoint not in run.endpoints:
            raise fail(400, f"model {name!r} is a {run.task.name} run ({run.model.family}); "
                            f"/{endpoint} is not for it; its endpoints: "
                            f"{', '.join(run.endpoints) or 'none'}")
        return run

    async def compute(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the model thread within the time limit; SeqlabError -> 422."""
        if self.pending >= self.limits.max_pending:
            raise fail(429, f"{self.pending} requests are already waiting for the model "
                            f"(max_pending {self.limits.max_pending}); retry later")
        self.pending += 1
        loop = asyncio.get_running_loop()
        limit = self.limits.max_request_seconds
        late = fail(408, f"the request took longer than max_request_seconds {limit:g}")
        try:
            start = loop.time()
            future: Awaitable[T] = loop.run_in_executor(self.executor, fn)
            result = await asyncio.wait_for(future, limit)
            if loop.time() - start > limit:  # done, but the event loop saw the timer late
                raise late
            return result
        except TimeoutError:
            raise late from None
        except SeqlabError as e:
            raise fail(422, str(e)) from None
        finally:
            self.pending -= 1

    def check_length(self, what: str, n: int) -> None:
        if n > self.limits.max_prompt_tokens:
            raise fail(422, f"{what}: {n} tokens, more than the server's max_prompt_tokens "
                            f"{self.limits.max_prompt_tokens}")

    def start(self, run: Served, req: GenerateRequest | CompletionRequest, length: int
              ) -> Generation:
        """Check a generation request against the limits and add it to the model's batch."""
        if length > self.limits.max_tokens:
            raise fail(422, f"max_tokens: {length} is more than the server's max_tokens "
                            f"{self.limits.max_tokens}")
        cfg = sample_config(run, req, length)
        try:
            prompt = run.model.vocab.encode(cfg.prompt, strict=True)
        except SeqlabError as e:
            raise fail(422, str(e)) from None
        self.check_length("prompt", len(prompt))
        if self.streams >= self.limits.max_streams:
            raise fail(429, f"{self.streams} generations are running (max_streams "
                            f"{self.limits.max_streams}); retry later")
        deadline = asyncio.get_running_loop().time() + self.limits.max_request_seconds
        return self.batcher(run).submit([int(i) for i in prompt], cfg, deadline)

    async def close(self) -> None:
        for b in self.batchers.values():
            await b.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def sample_config(run: Served, req: GenerateRequest | CompletionRequest, length: int
                  ) -> SampleConfig:
    """The run's stored sample section, then the request's fields: as ``seqlab sample``."""
    given = {"temperature": req.temperature, "top_k": req.top_k, "top_p": req.top_p,
             "seed": req.seed, "greedy": getattr(req, "greedy", None)}
    raw = {**run.config.get("sample", {}), **{k: v for k, v in given.items() if v is not None},
           "prompt": req.prompt, "length": length, "num_samples": 1}
    try:
        return from_dict(SampleConfig, raw, prefix="sample.")
    except SeqlabError as e:
        raise fail(422, str(e)) from None


def default_length(run: Served, limits: ServeConfig) -> int:
    stored = run.config.get("sample", {}).get("length", SampleConfig.length)
    return min(int(stored), limits.max_tokens)


async def tokens_of(g: Generation, batcher: Batcher, interval: float = 0.0
                    ) -> AsyncIterator[list[int]]:
    """The tokens of a generation as they come, at most one batch per `interval` seconds
    (several tokens at once when they come faster); ends after the last one, raises
    TimeoutError when the row ran out of time. Leaving early (a client that disconnected)
    frees the slot at once."""
    first = True
    try:
        while True:
            if not first and interval > 0:
                await asyncio.sleep(interval)
            first = False
            items = [await g.out.get()]
            while not g.out.empty():
                items.append(g.out.get_nowait())
            toks = [i for i in items if isinstance(i, int)]
            if toks:
                yield toks
            if any(isinstance(i, TimedOut) for i in items):
                raise TimeoutError
            failed = [i for i in items if isinstance(i, Failed)]
            if failed:
                raise fail(500, f"generation failed: {failed[0].message}")
            if END in items:
                return
    finally:
        batcher.cancel(g)


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(runs: dict[str, Served], limits: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving `runs` (from `seqlab.serve.runs.load_runs`) under `limits`."""
    server = Server(runs, limits or ServeConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await server.close()

    app = FastAPI(title="seqlab", version=_version(), lifespan=lifespan,
                  description="Generate, score, inspect, translate and tag with trained "
                              "seqlab runs. Limits: see seqlab.serve.config.")
    app.state.server = server
    app.add_middleware(BodyLimit, limit=server.limits.max_body_bytes)
    _errors(app)
    _routes(app, server)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from seqlab import __version__

    return __version__


def _errors(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return error_response(422, "; ".join(problems) or "invalid request")


def _routes(app: FastAPI, server: Server) -> None:
    limits = server.limits

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The served runs (OpenAI's list format, plus task, family and endpoints)."""
        return {"object": "list", "data": [r.describe() for r in server.runs.values()],
                "limits": limits.__dict__}

    @app.post("/generate", response_class=StreamingResponse)
    async def generate(req: GenerateRequest) -> StreamingResponse:
        """Server-sent events: ``prompt`` (the prompt, echoed), one message per token
        (``{"index", "id", "text"}``), then ``done``; ``error`` (code 408) if time runs out.
        The prompt and the token texts joined are what ``seqlab sample`` prints."""
        run = server.run(req.model, "generate")
        length = default_length(run, limits) if req.max_tokens is None else req.max_tokens
        g = server.start(run, req, length)
        return _sse(_generate_events(server.batcher(run), run, g, limits.stream_interval))

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest) -> StreamingResponse | dict[str, Any]:
        """OpenAI's text completion; ``stream=true`` sends ``data: {chunk}`` lines and
        ``data: [DONE]``. ``top_k`` is an extension."""
        run = server.run(req.model, "completions")
        g = server.start(run, req, req.max_tokens)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
                "created": int(time.time()), "model": run.name}
        if req.stream:
            return _sse(_completion_events(server.batcher(run), run, g, head,
                                            limits.stream_interval))
        decoder, pieces = _decoder(run, g), []
        try:
            async for toks in tokens_of(g, server.batcher(run), limits.stream_interval):
                pieces += [decoder.feed(t) for t in toks]
        except TimeoutError:
            raise fail(408, f"the completion took longer than max_request_seconds "
                            f"{limits.max_request_seconds:g}") from None
        pieces.append(decoder.flush())
        n_prompt = len(g.prompt)
        return {**head, "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                                     "finish_reason": "length"}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": g.produced,
                          "total_tokens": n_prompt + g.produced}}

    @app.post("/score")
    async def score_text(req: ScoreRequest) -> dict[str, Any]:
        """Bits (-log2 p) of each token of ``text`` given the tokens before it, and the
        ``top_k`` most likely tokens at each position with their probabilities."""
        run = server.run(req.model, "score")
        if req.top_k > limits.max_alternatives:
            raise fail(422, f"top_k: {req.top_k} is more than the server's max_alternatives "
                            f"{limits.max_alternatives}")
        ids = run.model.vocab.encode(req.text)
        server.check_length("text", len(ids))
        return {"model": run.name,
                **await server.compute(lambda: analysis.score(run.model, ids, req.top_k))}

    @app.post("/inspect")
    async def inspect_text(req: InspectRequest) -> dict[str, Any]:
        """Recurrent LMs: the chosen unit's value after each token (``h`` or a gate), and per
        layer the gate histograms and per-unit saturation (< 0.1, > 0.9)."""
        run = server.run(req.model, "inspect")
        ids = run.model.vocab.encode(req.text)
        server.check_length("text", len(ids))
        out = await server.compute(lambda: analysis.inspect(run.model, ids, req.layer, req.unit,
                                                            req.signal))
        return {"model": run.name, **out}

    @app.post("/translate")
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        """seq2seq runs: n-best translations, the best one's attention (target x source)."""
        run = server.run(req.model, "translate")
        server.check_length("source", len(req.source.split()) if
                            run.model.vocab.src.level == "word" else len(req.source))
        options = {k: v for k, v in req.model_dump(exclude={"model", "source"}).items()
                   if v is not None}
        out = await server.compute(lambda: analysis.translate(run.model, req.source, options,
                                                              limits.max_tokens))
        return {"model": run.name, **out}

    @app.post("/tag")
    async def tag(req: TagRequest) -> dict[str, Any]:
        """Tagging runs: the Viterbi tags and each token's marginal over all tags."""
        run = server.run(req.model, "tag")
        words = req.text.split()
        server.check_length("text", len(words))
        return {"model": run.name,
                **await server.compute(lambda: analysis.tag(run.model, words))}

    @app.post("/predict")
    async def predict(req: PredictRequest) -> dict[str, Any]:
        """Any task whose inputs are text (not file names): ``task.predict`` on the inputs,
        one output per input, exactly as ``seqlab predict RUN`` prints them."""
        run = server.run(req.model, "predict")
        for i, line in enumerate(req.inputs):
            server.check_length(f"inputs[{i}]", len(line))  # characters: at least the tokens
        for key in LENGTH_OPTIONS:
            value = req.options.get(key)
            if isinstance(value, int | float) and value > limits.max_tokens:
                raise fail(422, f"options.{key}: {value} is more than the server's max_tokens "
                                f"{limits.max_tokens}")
        outputs = await server.compute(
            lambda: run.task.predict(run.model, req.inputs, **req.options))
        return {"model": run.name, "task": run.task.name, "outputs": outputs}


def stream_error(e: Exception, what: str) -> dict[str, Any]:
    """The error event that ends a started stream (its 200 status is already sent)."""
    if isinstance(e, HTTPException):
        return error_body(e.status_code, str(e.detail))
    return error_body(408, f"{what} stopped: max_request_seconds reached")


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _decoder(run: Served, g: Generation) -> Any:
    decoder = run.model.vocab.decoder()
    for tok in g.prompt:
        decoder.feed(int(tok))  # word spacing continues from the prompt, as in sample_text
    return decoder


async def _generate_events(batcher: Batcher, run: Served, g: Generation, interval: float
                           ) -> AsyncIterator[str]:
    decoder, index, text = _decoder(run, g), 0, []
    yield sse({"text": g.cfg.prompt}, "prompt")
    try:
        async for toks in tokens_of(g, batcher, interval):
            chunk = []
            for t in toks:
                piece = decoder.feed(t)
                text.append(piece)
                chunk.append(sse({"index": index, "id": t, "text": piece}))
                index += 1
            yield "".join(chunk)
    except (TimeoutError, HTTPException) as e:
        yield sse(stream_error(e, "generation"), "error")
        return
    tail = decoder.flush()
    if tail:
        text.append(tail)
        yield sse({"index": None, "id": None, "text": tail})
    yield sse({"finish_reason": "length", "tokens": index, "text": "".join(text)}, "done")


async def _completion_events(batcher: Batcher, run: Served, g: Generation,
                             head: dict[str, Any], interval: float) -> AsyncIterator[str]:
    decoder = _decoder(run, g)

    def chunk(text: str, finish: str | None) -> str:
        return sse({**head, "choices": [{"text": text, "index": 0, "logprobs": None,
                                         "finish_reason": finish}]})
    try:
        async for toks in tokens_of(g, batcher, interval):
            yield chunk("".join(decoder.feed(t) for t in toks), None)
    except (TimeoutError, HTTPException) as e:
        yield sse(stream_error(e, "completion"))
        yield "data: [DONE]\n\n"
        return
    yield chunk(decoder.flush(), "length")
    yield "data: [DONE]\n\n"

