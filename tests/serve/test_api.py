"""The HTTP API of `seqlab serve`, on three tiny trained runs (see conftest.py): every endpoint
for every task, streamed generation against the CLI's sample, continuous batching, each limit's
4xx with its JSON body, a disconnecting client, and the one-line start-up errors."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from seqlab.cli import main
from seqlab.config import from_dict
from seqlab.experiment import load_run, task_of
from seqlab.models.conv import ConvLM
from seqlab.nn.conv import ConvConfig
from seqlab.sampling import SampleConfig, stream
from seqlab.serve import bind, parse_limits
from seqlab.serve.app import create_app, tokens_of
from seqlab.serve.batching import Batcher, FusedRows, Generation, batched_step
from seqlab.serve.config import ServeConfig
from seqlab.serve.runs import load_runs


@pytest.fixture(scope="module")
def runs(serve_runs: dict[str, Path]) -> dict[str, Any]:
    return load_runs([str(p) for p in serve_runs.values()])


@pytest.fixture(params=["lstm", "wavenet", "tcn"])
def lm(request: pytest.FixtureRequest, runs: dict[str, Any]) -> Any:
    """The served LSTM, or a small conv LM over its vocabulary (both step through a fused
    stepper of `seqlab.fast_sampling`: recurrent rows along dim 1 of the state, conv along 0)."""
    model = runs["lm"].model
    if request.param == "lstm":
        return model
    torch.manual_seed(0)
    cfg = ConvConfig(kind=request.param, emb_dim=8, channels=12, skip_channels=10, levels=3,
                     dropout=0.0)
    return ConvLM(cfg, model.vocab).eval()


def client(runs: dict[str, Any], **limits: Any) -> TestClient:
    return TestClient(create_app(runs, ServeConfig(**limits)))


@pytest.fixture(scope="module")
def api(runs: dict[str, Any]) -> Iterator[TestClient]:
    with client(runs) as c:
        yield c


def events(body: str) -> list[tuple[str, Any]]:
    """Server-sent events as (event type, parsed data); ``[DONE]`` stays a string."""
    out = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        kind, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        out.append((kind, data if data == "[DONE]" else json.loads(data)))
    return out


def assert_error(r: httpx.Response, code: int) -> str:
    assert r.status_code == code, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and err["type"] and err["message"]
    return str(err["message"])


def cli_sample(run: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["sample", str(run), *args]) == 0
    return capsys.readouterr().out


# --- models, playground, docs --------------------------------------------------------------
def test_models_lists_each_run_with_its_task_and_endpoints(api: TestClient) -> None:
    data = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
    assert set(data) == {"lm", "rev", "tagger"}
    assert data["lm"]["task"] == "lm" and data["lm"]["cell"] == "lstm"
    assert data["lm"]["layers"] == 2 and data["lm"]["hidden"] == 24
    assert data["lm"]["endpoints"] == ["generate", "score", "completions", "predict",
                                       "inspect"]
    assert data["rev"]["endpoints"] == ["translate", "predict"]
    assert data["tagger"]["endpoints"] == ["tag", "predict"]


def test_playground_and_openapi_are_served_and_nothing_comes_from_the_internet(
        api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    for asset in ("app.js", "style.css"):
        r = api.get(f"/static/{asset}")
        assert r.status_code == 200 and len(r.text) > 500
        assert "http://" not in r.text and "https://" not in r.text
    assert "http://" not in page.text and "https://" not in page.text
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/generate", "/score", "/inspect", "/translate", "/tag", "/v1/completions",
            "/v1/models"} <= set(paths)
    assert api.get("/docs").status_code == 200


def test_wrong_task_and_unknown_model_are_json_errors(api: TestClient) -> None:
    assert "/tag is not for it" in assert_error(
        api.post("/tag", json={"model": "lm", "text": "a b"}), 400)
    assert "not found" in assert_error(api.post("/score", json={"model": "x", "text": "a"}), 404)
    assert "several runs" in assert_error(api.post("/score", json={"text": "a"}), 400)
    assert "tx" in assert_error(api.post("/score", json={"model": "lm", "tx": "a"}), 422)


# --- generation ----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"temperature": 0.9, "seed": 7},
    {"temperature": 1.3, "top_k": 5, "top_p": 0.9, "seed": 123},
])
def test_streamed_generation_equals_the_cli_sample(api: TestClient, serve_runs: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str],
                                                   options: dict[str, Any]) -> None:
    r = api.post("/generate", json={"model": "lm", "prompt": "the ", "max_tokens": 60,
                                    **options})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    assert evs[0] == ("prompt", {"text": "the "}) and evs[-1][0] == "done"
    tokens = [d for k, d in evs if k == "message"]
    assert [t["index"] for t in tokens] == list(range(60)) and evs[-1][1]["tokens"] == 60
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    cli = cli_sample(serve_runs["lm"], capsys, "--prompt", "the ", "--length", "60", *flags)
    assert "the " + "".join(t["text"] for t in tokens) + "\n" == cli
    assert evs[-1][1]["text"] == cli[len("the "):-1]


def test_completions_shape_stream_and_agreement(api: TestClient, serve_runs: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    body = {"model": "lm", "prompt": "the c", "max_tokens": 25, "seed": 3}
    whole = api.post("/v1/completions", json=body).json()
    assert whole["object"] == "text_completion" and whole["model"] == "lm"
    assert whole["id"].startswith("cmpl-") and isinstance(whole["created"], int)
    (choice,) = whole["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert whole["usage"] == {"prompt_tokens": 5, "completion_tokens": 25, "total_tokens": 30}
    r = api.post("/v1/completions", json={**body, "stream": True})
    evs = events(r.text)
    assert evs[-1] == ("message", "[DONE]")
    chunks = [d for _, d in evs[:-1]]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    cli = cli_sample(serve_runs["lm"], capsys, "--prompt", "the c", "--length", "25",
                     "--seed", "3")
    assert streamed == choice["text"] == cli[len("the c"):-1]


def test_generation_defaults_come_from_the_run_and_zero_tokens_is_empty(
        api: TestClient) -> None:
    evs = events(api.post("/generate", json={"model": "lm", "max_tokens": 0}).text)
    assert [k for k, _ in evs] == ["prompt", "done"] and evs[-1][1]["tokens"] == 0
    assert "outside the vocabulary" in assert_error(
        api.post("/generate", json={"model": "lm", "prompt": "QQ", "max_tokens": 3}), 422)


# --- continuous batching -------------------------------------------------------------------
def test_batched_step_equals_batch_1_steps(runs: dict[str, Any]) -> None:
    model = runs["lm"].model
    prompts = [[], [3, 4, 5], [7] * 9, [2, 9]]
    primed = [model.prime(p) for p in prompts]
    tokens = [5, 6, 7, 8]
    logits, states = batched_step(model, tokens, [s for _, s in primed])
    for tok, (_, s), lg, st in zip(tokens, primed, logits, states, strict=True):
        ref, ref_state = model.step(tok, s)
        torch.testing.assert_close(lg, ref, atol=1e-5, rtol=1e-5)
        for a, b in zip(st, ref_state, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_rows_equal_batch_1_steps_as_rows_join_and_leave(lm: Any) -> None:
    model = lm
    fused = FusedRows(model)
    cfg = SampleConfig(length=10)
    rows = [Generation(p, cfg, 0.0) for p in ([], [3, 4, 5], [7] * 9, [2, 9])]
    refs = []
    for g in rows:
        _, g.state = model.prime(np.asarray(g.prompt))
        refs.append(g.state)
    # Step all four, then only rows 3, 1 (reordered, two left), then a fresh row joins; then
    # three rows, which run in the stepper of four with one padding row.
    for members, tokens in [([0, 1, 2, 3], [5, 6, 7, 8]), ([3, 1], [4, 4])]:
        fused.step([rows[i] for i in members], tokens)
        for i, tok in zip(members, tokens, strict=True):
            ref, refs[i] = model.step(tok, refs[i])
            torch.testing.assert_close(rows[i].logits, ref, atol=1e-5, rtol=1e-5)
    new = Generation([6], cfg, 0.0)
    _, new.state = model.prime(np.asarray([6]))
    ref, _ = model.step(9, new.state)
    fused.step([rows[1], new], [5, 9])
    torch.testing.assert_close(new.logits, ref, atol=1e-5, rtol=1e-5)
    ref1, refs[1] = model.step(5, refs[1])
    torch.testing.assert_close(rows[1].logits, ref1, atol=1e-5, rtol=1e-5)
    _, rows[0].state = model.prime(np.asarray(rows[0].prompt))
    ref0, _ = model.step(3, rows[0].state)
    fused.step([rows[0], rows[1], new], [3, 2, 1])
    torch.testing.assert_close(rows[0].logits, ref0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows[1].logits, model.step(2, refs[1])[0], atol=1e-5, rtol=1e-5)
    assert sorted(fused.steppers) == [2, 4]  # power-of-two sizes only


def test_a_model_error_ends_the_stream_with_a_500_event_and_the_server_goes_on(
        api: TestClient, runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(prompt: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runs["lm"].model, "prime", broken)
    evs = events(api.post("/generate", json={"model": "lm", "max_tokens": 5}).text)
    assert evs[-1][0] == "error" and evs[-1][1]["error"]["code"] == 500
    assert "boom" in evs[-1][1]["error"]["message"]
    monkeypatch.undo()
    evs = events(api.post("/generate", json={"model": "lm", "max_tokens": 5}).text)
    assert evs[-1][0] == "done" and evs[-1][1]["tokens"] == 5


def test_concurrent_requests_share_steps_and_each_equals_its_own_sample(lm: Any) -> None:
    model = lm
    configs = [SampleConfig(length=n, seed=s, temperature=t, top_k=k)
               for n, s, t, k in [(30, 1, 1.0, None), (12, 2, 0.7, 4), (45, 3, 1.2, None),
                                  (1, 4, 1.0, None), (30, 1, 1.0, 3)]]
    prompts = [[3, 4], [], [5, 5, 5, 6], [7], [8, 9, 10]]

    async def run() -> tuple[list[list[int]], Batcher]:
        batcher = Batcher(model)
        deadline = asyncio.get_running_loop().time() + 600
        gens = [batcher.submit(p, c, deadline) for p, c in zip(prompts, configs, strict=True)]

        async def collect(g: Any) -> list[int]:
            return [t async for toks in tokens_of(g, batcher) for t in toks]

        out = await asyncio.gather(*(collect(g) for g in gens))
        await batcher.close()
        return list(out), batcher

    outputs, batcher = asyncio.run(run())
    assert batcher.largest_batch == 5 and batcher.steps == 45  # the longest request's steps
    assert batcher.slots == 0
    for p, c, got in zip(prompts, configs, outputs, strict=True):
        alone = list(stream(model, p, c, torch.Generator().manual_seed(c.seed)))
        assert got == alone


def test_a_cancelled_consumer_frees_its_slot_at_once(runs: dict[str, Any]) -> None:
    model = runs["lm"].model

    async def run() -> None:
        batcher = Batcher(model)
        deadline = asyncio.get_running_loop().time() + 600
        cfg = SampleConfig(length=10_000)
        keep, leave = batcher.submit([], cfg, deadline), batcher.submit([], cfg, deadline)
        got: list[int] = []

        async def consume(g: Any) -> None:
            async for toks in tokens_of(g, batcher):
                got.extend(toks)

        task = asyncio.get_running_loop().create_task(consume(leave))
        while len(got) < 5:
            await asyncio.sleep(0.001)
        assert batcher.slots == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert batcher.slots == 1 and leave.cancelled  # freed before the next step
        steps = batcher.steps
        while batcher.steps < steps + 2:
            await asyncio.sleep(0.001)
        assert batcher.active == [keep]  # and its row has left the batch
        await batcher.close()

    asyncio.run(run())


# --- score, inspect, translate, tag --------------------------------------------------------
def test_score_gives_bits_that_match_log_prob_and_ranked_alternatives(
        api: TestClient, runs: dict[str, Any]) -> None:
    text = "the dog sat on the mat."
    r = api.post("/score", json={"model": "lm", "text": text, "top_k": 4}).json()
    model = runs["lm"].model
    ids = model.vocab.encode(text)
    expected = -model.log_prob(ids) / math.log(2)
    assert [t["bits"] for t in r["tokens"]] == pytest.approx(expected, abs=1e-4)
    assert "".join(t["text"] for t in r["tokens"]) == text
    assert r["bits_per_token"] == pytest.approx(float(np.mean(expected)), abs=1e-4)
    for t in r["tokens"]:
        probs = [a["prob"] for a in t["top"]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and sum(probs) <= 1
        own = 2.0 ** -t["bits"]
        assert (own >= probs[-1] - 1e-9) == (t["id"] in [a["id"] for a in t["top"]]) or \
            own == pytest.approx(probs[-1])


def test_inspect_values_agree_with_the_fused_model(api: TestClient,
                                                  runs: dict[str, Any]) -> None:
    model, text = runs["lm"].model, "the cat sat"
    ids = model.vocab.encode(text)
    x = torch.tensor([[model.vocab.eos_id, *map(int, ids)]])
    with torch.no_grad():
        _, (h, c) = model(x, model.initial_state(1))  # the fused kernel's final state
    for layer, unit, signal, ref in [(1, 3, "h", h[0, 0, 3]), (2, 5, "h", h[1, 0, 5]),
                                     (2, 7, "c", c[1, 0, 7])]:
        r = api.post("/inspect", json={"model": "lm", "text": text, "layer": layer,
                                       "unit": unit, "signal": signal}).json()
        values = r["activation"]["values"]
        assert len(values) == len(ids) == len(r["tokens"])
        assert values[-1] == pytest.approx(float(ref), abs=1e-5)
    layers = r["layers"]
    assert [entry["layer"] for entry in layers] == [1, 2]
    for entry in layers:
        assert set(entry["gates"]) == {"i", "f", "o"}
        for g in entry["gates"].values():
            assert sum(g["histogram"]) == len(ids) * 24
            assert all(0 <= a <= 1 and 0 <= b <= 1 and a + b <= 1
                       for a, b in zip(g["left"], g["right"], strict=True))
    assert "signal must be one of" in assert_error(
        api.post("/inspect", json={"model": "lm", "text": "a", "signal": "q"}), 422)
    assert "unit must be in 0..23" in assert_error(
        api.post("/inspect", json={"model": "lm", "text": "a", "unit": 24}), 422)


def test_translate_matches_the_task_predict_with_attention(api: TestClient,
                                                           runs: dict[str, Any]) -> None:
    run = runs["rev"]
    for source in ["1 2 3", "4 0 0 5"]:
        r = api.post("/translate", json={"model": "rev", "source": source}).json()
        assert r["translation"] == run.task.predict(run.model, [source])[0]
        att = np.array(r["attention"])
        assert att.shape == (len(r["target_tokens"]), len(source.split()))
        np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-5)
        assert r["hypotheses"][0]["translation"] == r["translation"]
    greedy = api.post("/translate", json={"model": "rev", "source": "1 2",
                                          "strategy": "greedy"}).json()
    assert greedy["translation"] == run.task.predict(run.model, ["1 2"], strategy="greedy")[0]
    assert "non-empty" in assert_error(
        api.post("/translate", json={"model": "rev", "source": "  "}), 422)


def test_tag_matches_the_task_predict_with_marginals(api: TestClient,
                                                     runs: dict[str, Any]) -> None:
    run, text = runs["tagger"], "xx ab yy cd xx"
    r = api.post("/tag", json={"model": "tagger", "text": text}).json()
    assert r["tokens"] == text.split()
    assert " ".join(r["tags"]) == run.task.predict(run.model, [text])[0]
    for m, tag, conf in zip(r["marginals"], r["tags"], r["confidence"], strict=True):
        assert set(m) == set(r["tag_names"]) and sum(m.values()) == pytest.approx(1, abs=1e-5)
        assert m[tag] == pytest.approx(conf)


# --- limits --------------------------------------------------------------------------------
def test_each_limit_answers_its_4xx_with_a_json_error(runs: dict[str, Any]) -> None:
    with client(runs, max_body_bytes=300, max_prompt_tokens=20, max_tokens=50,
                max_alternatives=5) as c:
        big = {"model": "lm", "text": "x" * 400}
        assert "max_body_bytes 300" in assert_error(c.post("/score", json=big), 413)
        chunked = iter([b'{"model": "lm", "text": "', b"a" * 400, b'"}'])
        assert_error(c.post("/score", content=chunked,
                            headers={"content-type": "application/json"}), 413)
        assert "max_prompt_tokens 20" in assert_error(
            c.post("/generate", json={"model": "lm", "prompt": "the " * 6}), 422)
        assert "max_prompt_tokens" in assert_error(
            c.post("/score", json={"model": "lm", "text": "a" * 21}), 422)
        assert "max_tokens 50" in assert_error(
            c.post("/generate", json={"model": "lm", "max_tokens": 51}), 422)
        assert "max_tokens 50" in assert_error(
            c.post("/v1/completions", json={"model": "lm", "max_tokens": 51}), 422)
        assert "max_alternatives" in assert_error(
            c.post("/score", json={"model": "lm", "text": "a", "top_k": 6}), 422)
        assert "output limit" in assert_error(
            c.post("/translate", json={"model": "rev", "source": "1 2"}), 422)
        server = c.app.state.server  # type: ignore[attr-defined]
        server.pending = server.limits.max_pending  # as if that many requests were waiting
        assert "max_pending" in assert_error(
            c.post("/score", json={"model": "lm", "text": "a"}), 429)
        server.pending = 0


def test_the_time_limit_is_408_or_an_error_event_in_a_started_stream(
        runs: dict[str, Any]) -> None:
    with client(runs, max_request_seconds=1e-6) as c:
        assert "max_request_seconds" in assert_error(
            c.post("/score", json={"model": "lm", "text": "the cat"}), 408)
        assert_error(c.post("/v1/completions", json={"model": "lm", "max_tokens": 40}), 408)
        evs = events(c.post("/generate", json={"model": "lm", "max_tokens": 40}).text)
        assert evs[-1][0] == "error" and evs[-1][1]["error"]["code"] == 408
        assert sum(k == "message" for k, _ in evs) < 40
        evs = events(c.post("/v1/completions", json={"model": "lm", "max_tokens": 40,
                                                     "stream": True}).text)
        assert evs[-2][1]["error"]["code"] == 408 and evs[-1][1] == "[DONE]"


@pytest.fixture
def live(runs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A real uvicorn server on a free loopback port (streams, disconnects)."""
    import uvicorn

    app = create_app(runs, ServeConfig(max_streams=2, max_tokens=1_000_000))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.server
    server.should_exit = True
    thread.join(10)


def wait_until(condition: Any, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_streams_over_the_limit_get_429_and_a_disconnect_frees_a_slot(
        live: tuple[str, Any]) -> None:
    url, server = live
    long = {"model": "lm", "prompt": "the ", "max_tokens": 1_000_000}
    with httpx.Client(base_url=url, timeout=30) as http:
        first = http.send(http.build_request("POST", "/generate", json=long), stream=True)
        second = http.send(http.build_request("POST", "/v1/completions",
                                              json={**long, "stream": True}), stream=True)
        # Keep the line iterators: a dropped one closes its connection (httpcore).
        lines = [r.iter_lines() for r in (first, second)]
        for r, it in zip((first, second), lines, strict=True):
            assert r.status_code == 200 and next(it)  # streaming
        assert server.streams == 2
        assert "max_streams 2" in assert_error(http.post("/generate", json=long), 429)
        first.close()  # the client goes away mid-stream
        wait_until(lambda: server.streams == 1)
        third = http.send(http.build_request("POST", "/generate", json=long), stream=True)
        assert third.status_code == 200
        for r in (second, third):
            r.close()
        wait_until(lambda: server.streams == 0)


# --- the command ---------------------------------------------------------------------------
def test_bad_runs_and_limits_are_one_line_errors_before_listening(
        serve_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(serve_runs["lm"], broken)
    (broken / "best.safetensors").write_bytes(b"not a checkpoint")
    cases = [([str(tmp_path / "missing")], "run folder not found"),
             ([str(broken)], "corrupt or truncated"),
             ([str(serve_runs["lm"]), "--limit", "max_streams=0"], "limit.max_streams"),
             ([str(serve_runs["lm"]), "--limit", "speed=3"], "unknown config key limit.speed"),
             ([str(serve_runs["lm"]), f"lm={serve_runs['rev']}"], "both called 'lm'")]
    for args, message in cases:
        capsys.readouterr()
        assert main(["serve", *args, "--port", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("seqlab: error: ") and message in err and err.count("\n") == 1


def test_limits_parse_from_the_command_line() -> None:
    cfg = parse_limits(["max_streams=8", "max_request_seconds=2.5", "limit.max_tokens=10"])
    assert (cfg.max_streams, cfg.max_request_seconds, cfg.max_tokens) == (8, 2.5, 10)
    assert from_dict(ServeConfig, {}) == ServeConfig()


def test_load_run_and_task_agree_with_the_served_runs(serve_runs: dict[str, Path],
                                                      runs: dict[str, Any]) -> None:
    for name, path in serve_runs.items():
        model, config = load_run(path)
        assert task_of(model, config).name == runs[name].task.name


# --- /predict: every task whose inputs are text ---------------------------------------------
PREDICT_INPUTS = {  # a few input lines per task, as `seqlab predict` reads them
    "music": ["[[60, 64], [62]]", "[[60]]"], "lm": ["the c", "on "],
    "seq2seq": ["a b", "c d e"], "parity": ["0110", "1"],
    "series": ["0.1 0.2", "0.2 0.3"], "tagging": ["a bb c", "d"],
    "tree": ["(1 (0 a) (1 b))", "(0 c)"], "memory": ["10110011 00001111", "11110000"],
}


@pytest.mark.parametrize("task", sorted(PREDICT_INPUTS))
def test_predict_answers_for_every_text_task_as_the_cli_does(
        task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tasks.test_task_layer import TASK_ARGS

    from seqlab import tasks
    from seqlab.serve.runs import NO_PREDICT

    assert set(PREDICT_INPUTS) == set(tasks.TASKS) - NO_PREDICT  # a new task gets a case here
    out = tmp_path / "run"
    model, good, extra = TASK_ARGS[task]
    if callable(good):  # generated data (or a folder the maker writes)
        data = good(tmp_path)
    else:
        data = tmp_path / "data.txt"
        data.write_text(good, encoding="utf-8")
    assert main(["train", "--model", model, "--out", str(out), "--data", str(data), *extra]) == 0
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(PREDICT_INPUTS[task]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(inputs)]) == 0
    printed = capsys.readouterr().out
    with client(load_runs([f"m={out}"])) as c:
        assert "predict" in c.get("/v1/models").json()["data"][0]["endpoints"]
        r = c.post("/predict", json={"inputs": PREDICT_INPUTS[task]})
        assert r.status_code == 200, r.text
        outputs = r.json()["outputs"]
        assert r.json()["task"] == task and outputs  # (series: one forecast after them all)
        assert "".join(f"{o}\n" for o in outputs) == printed  # the CLI prints one per line
        assert_error(c.post("/predict", json={"inputs": ["x" * 5000]}), 422)  # prompt limit
        if task == "lm":
            assert_error(c.post("/predict", json={"inputs": ["a"],
                                                  "options": {"length": 10**6}}), 422)
            bad = c.post("/predict", json={"inputs": ["a"], "options": {"nope": 1}})
            assert "nope" in assert_error(bad, 422)  # the task's own one-line error


def test_predict_is_not_offered_where_inputs_name_server_files(tmp_path: Path) -> None:
    """image2seq reads the image files its input lines name: not something a client chooses."""
    out = tmp_path / "im"
    assert main(["train", "--model", "im2latex", "--out", str(out), "train.max_steps=1",
                 "data.n_train=8", "data.n_valid=2", "data.n_test=2", "model.hidden=8",
                 "model.channels=8", "model.emb_dim=4", "train.batch_size=2",
                 "train.progress=false"]) == 0
    with client(load_runs([str(out)])) as c:
        assert c.get("/v1/models").json()["data"][0]["endpoints"] == []
        assert "not for it" in assert_error(c.post("/predict", json={"inputs": ["/etc/x"]}), 400)
