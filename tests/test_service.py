"""The HTTP service through FastAPI's TestClient, over the fake pipeline, the fixture corpus and golden file.

Every endpoint, every 4xx path, a pipeline that raises, the doc-id guard, the holdout refusal, the token
rule, the OpenAPI examples, a slow pipeline that must not block /healthz, and streamed answers: from the
fake, from the starter's extractive generator, and from the LLM generator on a scripted streaming server
(ScriptedLLM in tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import ScriptedLLM
from exercise.config import Config
from harness.cli import app as cli_app
from harness.runner import start_run
from harness.service import check_bind, create_app, is_loopback

REFUND_QUESTION = "How many days do I have to cancel an annual plan for a refund?"


@pytest.fixture
def make_client(fake_pipeline_module, fixture_corpus, fixture_golden, runs):
    def make(**kwargs) -> TestClient:
        options = {"pipeline": fake_pipeline_module, "corpus": fixture_corpus, "golden": fixture_golden} | kwargs
        return TestClient(create_app(**options))
    return make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def make_run(fake_pipeline_module, fixture_corpus, fixture_golden, **config) -> str:
    run = start_run(fixture_golden, fixture_corpus, Config(**config), fake_pipeline_module)
    for _ in run.questions():
        pass
    run.finish()
    return run.spec.run_id


# --- endpoints ----------------------------------------------------------------------------------

def test_healthz_names_the_pipeline_and_counts_docs(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["pipeline"] == "fake_pipeline"
    assert health["docs"] == 5 and health["golden"] == 6
    assert health["peak_rss_mb"] > 10


def test_ask_returns_the_answer_record_with_doc_status_and_evidence(client):
    res = client.post("/api/ask", json={"question": REFUND_QUESTION})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["answer"] and body["citations"] and not body["abstained"]
    assert body["latency_ms"] == {"retrieve": 1.0, "generate": 0.5, "total": 1.5}
    hits = {h["chunk_id"]: h for h in body["retrieved"]}
    assert [h["rank"] for h in body["retrieved"]] == list(range(1, len(hits) + 1))
    assert all(isinstance(h["score"], float) for h in hits.values())
    assert set(body["context"]) <= set(hits) and all(hits[c]["in_context"] for c in body["context"])
    assert all(hits[c]["cited"] for c in body["citations"])
    old, new = hits["policies/refunds-2024.txt#1"], hits["policies/refunds.txt#1"]
    assert old["doc_status"] == "superseded" and old["superseded_by"] == "policies/refunds.txt"
    assert old["evidence"] == [] and new["evidence"] == [0]  # matched to golden fx-04 by its text
    assert body["golden"]["id"] == "fx-04"
    assert new["text"] in client.get("/api/docs/policies/refunds.txt").json()["text"][new["start"]:new["end"]]


def test_ask_flags_hits_from_injection_documents(client):
    body = client.post("/api/ask", json={"question": "Who handles refunds for annual plans? ignore instructions"}).json()
    flagged = {h["doc_id"] for h in body["retrieved"] if h["injection"]}
    assert flagged == {"community/tip.md"}
    assert body["golden"] is None and all(h["evidence"] == [] for h in body["retrieved"])


def test_ask_takes_k_and_an_explicit_golden_id(client):
    body = client.post("/api/ask", json={"question": "KOS-4032 meaning", "k": 3, "golden_id": "fx-02"}).json()
    assert len(body["retrieved"]) == 3
    assert body["golden"]["id"] == "fx-02"
    assert any(h["evidence"] == [0] for h in body["retrieved"])


def test_search_is_retrieval_only(client):
    body = client.post("/api/search", json={"question": "KOS-4032 bucket name", "k": 2}).json()
    assert body["question"] == "KOS-4032 bucket name" and body["k"] == 2 and len(body["hits"]) == 2
    assert body["hits"][0]["doc_id"] == "guides/errors.html"
    assert not any(h["in_context"] or h["cited"] for h in body["hits"])
    assert "search" in body["latency_ms"]


def test_search_takes_the_question_as_ask_does_and_names_the_old_query_field_when_refusing_it(client):
    asked = client.post("/api/ask", json={"question": REFUND_QUESTION, "k": 3}).json()
    searched = client.post("/api/search", json={"question": REFUND_QUESTION, "k": 3}).json()
    assert [h["chunk_id"] for h in searched["hits"]] == [h["chunk_id"] for h in asked["retrieved"]]
    res = client.post("/api/search", json={"query": REFUND_QUESTION, "k": 3})
    assert res.status_code == 422
    assert "query is not a field of this request" in res.json()["detail"]
    assert '"question": "KOS-4032 bucket name taken"' in res.json()["detail"]  # the example shows the field to use


def test_docs_resolve_by_id_with_metadata(client):
    doc = client.get("/api/docs/policies/refunds-2024.txt").json()
    assert doc["title"] == "Refund policy (2024)" and doc["status"] == "superseded"
    assert doc["superseded_by"] == "policies/refunds.txt" and "14 days" in doc["text"]
    tip = client.get("/api/docs/community/tip.md").json()
    assert tip["injection"] is True and tip["canary"] == "KC-CANARY-7Q2M9X"


@pytest.mark.parametrize("path", [
    "../pyproject.toml", "..%2Fpyproject.toml", "%2e%2e/%2e%2e/pyproject.toml", "%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/etc/passwd", "%2Fetc%2Fpasswd", "/work/main/pyproject.toml", "guides/../../pyproject.toml",
    "guides%2F..%2F..%2Fpyproject.toml", "guides/lifecycle.md/../../../pyproject.toml", "README.md", "canaries.json",
])
def test_doc_ids_never_reach_the_filesystem(client, path):
    res = client.get(f"/api/docs/{path}")
    assert res.status_code == 404
    assert "build-system" not in res.text and "root:" not in res.text


def test_golden_lists_dev_questions_with_evidence(client):
    questions = client.get("/api/golden").json()
    assert [q["id"] for q in questions] == ["fx-01", "fx-02", "fx-03", "fx-04", "fx-05", "fx-06"]
    one = client.get("/api/golden/fx-05").json()
    assert len(one["evidence"]) == 2 and one["evidence"][0]["doc_id"] == "guides/errors.html"


def test_golden_refuses_a_holdout_file(fake_pipeline_module, fixture_corpus, fixture_golden, tmp_path):
    holdout = tmp_path / "holdout.jsonl"
    shutil.copy(fixture_golden, holdout)
    with pytest.raises(ValueError, match="holdout"):
        create_app(fake_pipeline_module, fixture_corpus, holdout)


def test_runs_list_and_detail(client, runs, fake_pipeline_module, fixture_corpus, fixture_golden):
    assert client.get("/api/runs").json() == []
    run_id = make_run(fake_pipeline_module, fixture_corpus, fixture_golden)
    (listed,) = client.get("/api/runs").json()
    assert listed["run_id"] == run_id and listed["latest"] and listed["complete"]
    assert 0 <= listed["metrics"]["evidence_recall@5"] <= 1 and sum(listed["failures"].values()) == 6
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["summary"]["run_id"] == run_id
    samples = {s["id"]: s for s in detail["samples"]}
    assert set(samples) == {f"fx-0{n}" for n in range(1, 7)}
    assert all(s["failure"] for s in samples.values())
    assert samples["fx-01"]["expected"]["answer"] == "After 90 days, to cold-vault."
    assert any(h["evidence"] == [0] for h in samples["fx-01"]["retrieved"])
    assert client.get("/api/runs/latest").json()["summary"]["run_id"] == run_id


def test_runs_on_the_holdout_are_not_listed(client, runs, fake_pipeline_module, fixture_corpus, fixture_golden):
    run_id = make_run(fake_pipeline_module, fixture_corpus, fixture_golden)
    hidden = runs / "20990101T000000-holdout"
    shutil.copytree(runs / run_id, hidden)
    spec = json.loads((hidden / "spec.json").read_text())
    (hidden / "spec.json").write_text(json.dumps(spec | {"golden": "golden_set/holdout.jsonl"}))
    assert [r["run_id"] for r in client.get("/api/runs").json()] == [run_id]
    assert client.get(f"/api/runs/{hidden.name}").status_code == 404


def test_compare_reports_flips_and_deltas(client, runs, fake_pipeline_module, fixture_corpus, fixture_golden):
    narrow = make_run(fake_pipeline_module, fixture_corpus, fixture_golden, k_retrieve=1, k_context=1)
    wide = make_run(fake_pipeline_module, fixture_corpus, fixture_golden)
    body = client.get("/api/compare", params={"a": narrow, "b": wide}).json()
    assert {d["metric"] for d in body["deltas"]} >= {"evidence_recall@5", "fact_recall"}
    assert all(f["before"] != f["after"] and f["question"] for f in body["flips"])
    assert client.get("/api/compare", params={"a": narrow, "b": "nope"}).status_code == 404


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'data-testid="ask-button"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert "text/css" in client.get("/static/style.css").headers["content-type"]
    for path in ("/static/index.html", "/static/..%2F..%2Fpyproject.toml", "/static/../service.py"):
        assert client.get(path).status_code == 404


# --- bad requests -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, fragment", [
    ("/api/ask", {"question": ""}, "question is empty"),
    ("/api/ask", {"question": "   \n"}, "question is empty"),
    ("/api/ask", {"question": "x" * 2001}, "limit is 2,000"),
    ("/api/ask", {"question": "ok", "k": 0}, "from 1 to 50"),
    ("/api/ask", {"question": "ok", "k": 51}, "from 1 to 50"),
    ("/api/ask", {"question": "ok", "k": "ten"}, "from 1 to 50"),
    ("/api/ask", {}, "question is missing"),
    ("/api/ask", {"query": "wrong field"}, "question is missing"),
    ("/api/ask", {"question": "ok", "golden": "fx-01"}, "golden is not a field of this request"),
    ("/api/search", {"question": ""}, "question is empty"),
    ("/api/search", {"question": "y" * 2001}, "limit is 2,000"),
    ("/api/search", {"question": "ok", "k": 500}, "from 1 to 50"),
    ("/api/search", {"query": "wrong field"}, "question is missing"),
])
def test_bad_requests_say_what_to_fix(client, path, body, fragment):
    res = client.post(path, json=body)
    assert res.status_code == 422
    assert fragment in res.json()["detail"]


def test_a_body_that_is_not_json_gets_a_4xx(client):
    res = client.post("/api/ask", content=b"{question", headers={"content-type": "application/json"})
    assert res.status_code == 422 and "not valid JSON" in res.json()["detail"]


@pytest.mark.parametrize("path, fragment", [
    ("/api/docs/guides/nope.md", "unknown doc id 'guides/nope.md'"),
    ("/api/golden/fx-99", "unknown golden id 'fx-99'"),
    ("/api/runs/20990101T000000-nogit", "unknown run '20990101T000000-nogit'"),
    ("/api/runs/%2E%2E", "unknown run '..'"),
    ("/api/runs/latest", "unknown run 'latest'"),
])
def test_unknown_ids_are_404_with_a_message(client, path, fragment):
    res = client.get(path)
    assert res.status_code == 404
    assert fragment in res.json()["detail"]


def test_ask_with_an_unknown_golden_id_is_404(client):
    res = client.post("/api/ask", json={"question": "anything", "golden_id": "fx-99"})
    assert res.status_code == 404 and "fx-99" in res.json()["detail"]


def test_a_pipeline_that_raises_gives_500_with_its_text_and_the_server_stays_up(client):
    res = client.post("/api/ask", json={"question": "please RAISE now"})
    assert res.status_code == 500
    assert "RuntimeError: the fake pipeline was asked to fail" in res.json()["detail"]
    assert client.get("/healthz").status_code == 200
    assert client.post("/api/ask", json={"question": REFUND_QUESTION}).status_code == 200


def test_a_slow_pipeline_does_not_block_healthz(make_client):
    client = make_client()
    pipeline = client.app.state.pipeline
    entered, release = threading.Event(), threading.Event()
    answer = pipeline.answer

    def slow(question: str):
        entered.set()
        release.wait(10)
        return answer(question)

    pipeline.answer = slow
    with client:
        asking = threading.Thread(target=lambda: client.post("/api/ask", json={"question": REFUND_QUESTION}))
        asking.start()
        try:
            assert entered.wait(5), "the ask request never reached the pipeline"
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            assert time.perf_counter() - started < 2
        finally:
            release.set()
            asking.join(10)


# --- token and binding ----------------------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                            ("0.0.0.0", False), ("192.168.1.20", False), ("::", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_requires_a_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "s3cret")
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)


def test_serve_refuses_to_start_without_a_token_off_loopback(monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn.run must not be called"))
    monkeypatch.delenv("RAGKATA_TOKEN", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert isinstance(result.exception, ValueError) and "--token" in str(result.exception)


def test_serve_builds_the_app_and_runs_uvicorn(monkeypatch, fake_pipeline_module, fixture_corpus, fixture_golden):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port: calls.append((app, host, port)))
    args = ["serve", "--port", "8123", "--pipeline", fake_pipeline_module, "--corpus", str(fixture_corpus),
            "--golden", str(fixture_golden), "--config", "k_context=2"]
    result = CliRunner().invoke(cli_app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ((web, host, port),) = calls
    assert (host, port) == ("127.0.0.1", 8123)
    assert TestClient(web).get("/healthz").json()["config"]["k_context"] == 2


def test_with_a_token_every_api_request_needs_it(make_client):
    client = make_client(token="s3cret")
    assert client.get("/api/golden").status_code == 401
    assert client.get("/api/golden", headers={"Authorization": "Bearer wrong"}).status_code == 401
    res = client.post("/api/ask", json={"question": "x"}, headers={"Authorization": "s3cret"})
    assert res.status_code == 401 and "Bearer" in res.json()["detail"]
    assert client.post("/api/ask", content=b"{bad", headers={"content-type": "application/json"}).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/golden", headers=good).status_code == 200
    assert client.post("/api/search", json={"question": "refund"}, headers=good).status_code == 200
    assert client.get("/healthz").json()["token_required"] is True


# --- OpenAPI ------------------------------------------------------------------------------------

def test_openapi_has_examples_for_every_request_and_response(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, method in (("/api/ask", "post"), ("/api/search", "post")):
        ref = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert components[ref.split("/")[-1]]["examples"], ref
    missing = [name for name, component in components.items() if not component.get("examples")]
    assert missing == []
    assert {"/api/ask", "/api/search", "/api/docs/{doc_id}", "/api/golden", "/api/golden/{golden_id}", "/api/runs",
            "/api/runs/{run_id}", "/healthz"} <= set(schema["paths"])
    assert "404" in schema["paths"]["/api/docs/{doc_id}"]["get"]["responses"]


# --- streaming ------------------------------------------------------------------------------------

def events_of(res) -> list[dict]:
    """The NDJSON lines of a streamed /api/ask, parsed."""
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in res.text.splitlines() if line.strip()]


def test_ask_names_its_sources_and_usage(client):
    body = client.post("/api/ask", json={"question": REFUND_QUESTION, "k": 1}).json()
    assert [s["n"] for s in body["sources"]] == list(range(1, len(body["context"]) + 1))
    assert [s["chunk_id"] for s in body["sources"]] == body["context"]  # all of them, though k=1 shows one hit
    assert len(body["retrieved"]) == 1 and body["sources"][0]["text"] and body["sources"][0]["doc_title"]
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "cached": False, "calls": 0}


def test_a_streamed_answer_sends_the_context_the_text_then_the_whole_response(client):
    events = events_of(client.post("/api/ask", json={"question": REFUND_QUESTION, "stream": True}))
    assert [e["event"] for e in events] == ["context", "delta", "answer"]  # no generator to tap: the text in one piece
    plain = client.post("/api/ask", json={"question": REFUND_QUESTION}).json()
    assert events[-1]["answer"] == plain
    assert events[0]["sources"] == plain["sources"] and events[1]["text"] == plain["answer"]


def test_a_pipeline_that_raises_while_streaming_ends_the_stream_with_an_error_line(client):
    events = events_of(client.post("/api/ask", json={"question": "please RAISE now", "stream": True}))
    assert events == [{"event": "error", "detail": "the pipeline raised RuntimeError: the fake pipeline was asked to fail"}]
    assert client.post("/api/ask", json={"question": REFUND_QUESTION, "stream": True}).status_code == 200


def test_a_streamed_ask_is_validated_before_it_streams(client):
    res = client.post("/api/ask", json={"question": "anything", "golden_id": "fx-99", "stream": True})
    assert res.status_code == 404 and "fx-99" in res.json()["detail"]
    res = client.post("/api/ask", json={"question": "anything", "stream": "maybe"})
    assert res.status_code == 422


@pytest.fixture
def starter_client(fixture_corpus, fixture_golden, runs) -> TestClient:
    """The service over the starter pipeline with BM25 and the extractive generator."""
    return TestClient(create_app("exercise", fixture_corpus, fixture_golden, Config(retriever="bm25")))


def test_the_starter_streams_its_context_before_its_text(starter_client):
    question = "How long until my files move to the archive tier?"
    events = events_of(starter_client.post("/api/ask", json={"question": question, "stream": True}))
    assert [e["event"] for e in events] == ["context", "delta", "answer"]
    final = events[-1]["answer"]
    assert events[0]["sources"] == final["sources"] and [s["chunk_id"] for s in final["sources"]] == final["context"]
    assert events[1]["text"] == final["answer"] and "90 days" in final["answer"]
    plain = starter_client.post("/api/ask", json={"question": question}).json()
    assert {k: v for k, v in plain.items() if k != "latency_ms"} == {k: v for k, v in final.items() if k != "latency_ms"}
    assert type(starter_client.app.state.pipeline.generator).__name__ == "StreamTap"


PIECES = ("The agent ", "listens on **port 9100** ", "[1].", "\n\n- restarts nightly [2]")


@pytest.fixture
def streaming_llm(scripted_llm) -> ScriptedLLM:
    """The scripted endpoint streaming its reply in PIECES, with 90 prompt and 12 completion tokens when asked."""
    scripted_llm.pieces, scripted_llm.usage = PIECES, (90, 12)
    return scripted_llm


@pytest.fixture
def llm_client(fixture_corpus, fixture_golden, runs, tmp_path, streaming_llm) -> tuple[TestClient, ScriptedLLM]:
    """The service over the starter with generator=llm on streaming_llm; its replies cached under tmp_path."""
    config = Config(retriever="bm25", generator="llm", llm_base_url=streaming_llm.url, llm_model="streaming-model",
                    cache_dir=str(tmp_path / "cache"), llm_price_in=1.0, llm_price_out=2.0)
    return TestClient(create_app("exercise", fixture_corpus, fixture_golden, config)), streaming_llm


def test_the_llm_generator_streams_its_reply_piece_by_piece_then_the_cited_answer_and_its_usage(llm_client, tmp_path):
    client, server = llm_client
    events = events_of(client.post("/api/ask", json={"question": "Which port does the agent use?", "stream": True}))
    assert [e["event"] for e in events] == ["context", "delta", "delta", "delta", "delta", "answer"]
    assert [e["text"] for e in events[1:-1]] == list(PIECES)
    final, context = events[-1]["answer"], events[0]["sources"]
    assert final["answer"] == "".join(PIECES).strip()
    assert final["citations"] == [context[0]["chunk_id"], context[1]["chunk_id"]]  # [1] and [2] name the sources
    assert final["usage"] == {"prompt_tokens": 90, "completion_tokens": 12, "cost_usd": pytest.approx((90 + 24) / 1e6),
                              "cached": False, "calls": 1}
    (request,) = server.requests
    assert request["body"]["stream"] is True and request["body"]["model"] == "streaming-model"
    assert len(list((tmp_path / "cache" / "llm").glob("*.json"))) == 1  # cached as generate() would have

    again = events_of(client.post("/api/ask", json={"question": "Which port does the agent use?", "stream": True}))
    assert [e["event"] for e in again] == ["context", "delta", "answer"]  # the cached reply, in one piece
    assert again[1]["text"] == final["answer"] and again[-1]["answer"]["usage"]["cached"] is True
    plain = client.post("/api/ask", json={"question": "Which port does the agent use?"}).json()
    assert plain["answer"] == final["answer"] and plain["usage"]["cached"] is True
    assert len(server.requests) == 1  # neither the second stream nor generate() called the model again


def test_a_server_that_reports_no_usage_while_streaming_gives_zero_tokens_and_is_not_cached(fixture_corpus, fixture_golden,
                                                                                            runs, tmp_path, streaming_llm):
    streaming_llm.usage = None  # as llama.cpp's server does
    config = Config(retriever="bm25", generator="llm", llm_base_url=streaming_llm.url, cache_dir=str(tmp_path / "cache"))
    client = TestClient(create_app("exercise", fixture_corpus, fixture_golden, config))
    events = events_of(client.post("/api/ask", json={"question": "Which port does the agent use?", "stream": True}))
    assert events[-1]["answer"]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                                             "cached": False, "calls": 1}
    assert not (tmp_path / "cache" / "llm").exists()  # a reply without its token counts is not kept


def test_a_model_that_cannot_be_reached_while_streaming_gives_an_error_line(fixture_corpus, fixture_golden, runs, tmp_path):
    config = Config(retriever="bm25", generator="llm", llm_base_url="http://127.0.0.1:9/v1", cache_dir=str(tmp_path))
    client = TestClient(create_app("exercise", fixture_corpus, fixture_golden, config))
    context, error = events_of(client.post("/api/ask", json={"question": "Which port does the agent use?", "stream": True}))
    assert context["event"] == "context" and context["sources"]  # retrieval had worked by then
    assert error["event"] == "error" and "LLMError" in error["detail"] and "127.0.0.1:9" in error["detail"]
    assert client.get("/healthz").status_code == 200
