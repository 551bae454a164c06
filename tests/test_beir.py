"""BEIR in and out: the importer and its reversible doc ids, retrieval-only golden questions, the document-level
metrics doc_ndcg@10 and doc_recall@100 (by hand, against ranx, and on a SciFact slice with BM25), the deep
search of retrieval-only runs, and `ragkata eval` on a BEIR folder with no answer metrics in its summary."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from ranx import Qrels, Run, evaluate
from typer.testing import CliRunner

from exercise.config import Config
from exercise.contracts import Chunk, Hit
from harness import beir
from harness import metrics as m
from harness.cli import app
from harness.corpus import load_corpus
from harness.golden import check_line, golden_tags, read_golden
from harness.runner import search_documents
from harness.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "external" / "scifact"  # beside the repository, never inside it (CC BY-NC)


# --- the metrics by hand -------------------------------------------------------------------------------


def test_doc_ndcg_by_hand():
    judged = {"a": 1, "b": 2}
    # ranking a, x, b (a's second chunk ignored): DCG = 1/log2(2) + 2/log2(4) = 2;
    # ideal from the judgements: 2/log2(2) + 1/log2(3) = 2.6309
    assert m.doc_ndcg_at_k(["a", "a", "x", "b"], judged, 10) == pytest.approx(2 / (2 + 1 / math.log2(3)))
    assert m.doc_ndcg_at_k(["b", "a"], judged, 10) == pytest.approx(1.0)
    # a relevant document never retrieved still counts in the ideal: DCG 1, ideal 2.6309
    assert m.doc_ndcg_at_k(["a"], judged, 10) == pytest.approx(1 / (2 + 1 / math.log2(3)))
    # cut at k=1: only rank 1 counts, ideal = 2
    assert m.doc_ndcg_at_k(["a", "b"], judged, 1) == pytest.approx(0.5)
    assert m.doc_ndcg_at_k([], judged, 10) == 0.0
    assert m.doc_ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # nothing relevant: 0, not a division by zero


def test_judged_recall_by_hand():
    judged = {"a": 1, "b": 2, "c": 1, "z": 0}
    assert m.judged_recall_at_k(["a", "x", "b"], judged, 2) == pytest.approx(1 / 3)  # docs a, x: a of a, b, c
    assert m.judged_recall_at_k(["a", "a", "x", "b"], judged, 3) == pytest.approx(2 / 3)  # docs a, x, b
    assert m.judged_recall_at_k(["z", "a", "b", "c"], judged, 100) == 1.0  # z judged 0 is not relevant
    assert m.judged_recall_at_k(["a"], {}, 100) == 0.0


# --- the metrics against ranx --------------------------------------------------------------------------


def _random_doc_cases(seed: int = 20261202, n: int = 80):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    cases = {}
    for q in range(n):
        judged = {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 8))}
        chunk_docs = [rng.choice(docs) for _ in range(rng.randint(0, 150))]  # repeats: several chunks per document
        cases[f"q{q}"] = (chunk_docs, judged)
    return cases


def test_doc_metrics_agree_with_ranx_on_random_graded_runs():
    cases = _random_doc_cases()
    qrels = Qrels({q: judged for q, (_, judged) in cases.items()})
    # ranx's run: each document at its first occurrence, strictly decreasing scores so no ties
    rankings = {q: m.top_k_docs(chunk_docs, 10**6) if chunk_docs else [] for q, (chunk_docs, _) in cases.items()}
    run = Run({q: {d: float(len(r) - i) for i, d in enumerate(r)} or {"nothing": 0.0} for q, r in rankings.items()})
    evaluate(qrels, run, ["ndcg@10", "recall@100", "recall@10"], return_mean=False)
    for q, (chunk_docs, judged) in cases.items():
        assert m.doc_ndcg_at_k(chunk_docs, judged, 10) == pytest.approx(run.scores["ndcg@10"][q], abs=1e-9), q
        assert m.judged_recall_at_k(chunk_docs, judged, 100) == pytest.approx(run.scores["recall@100"][q], abs=1e-9)
        assert m.judged_recall_at_k(chunk_docs, judged, 10) == pytest.approx(run.scores["recall@10"][q], abs=1e-9)


# --- doc ids and the importer ---------------------------------------------------------------------------


@pytest.mark.parametrize("beir_id", ["4983", "MED-10", "a b", "<dbpedia:Foo_Bar>", "é", "x.y_z", "README", "0"])
def test_doc_ids_are_safe_and_reversible(beir_id):
    doc_id = beir.doc_id_for(beir_id)
    assert doc_id.endswith(".md") and doc_id == doc_id.lower() and "/" not in doc_id and " " not in doc_id
    assert beir.beir_id_of(doc_id) == beir_id


def test_doc_ids_of_ids_differing_in_case_differ():
    assert beir.doc_id_for("Abc") != beir.doc_id_for("abc")
    with pytest.raises(beir.BeirError):
        beir.beir_id_of("storage/guides/x.md")


def write_beir(folder: Path, docs: list[dict], queries: list[dict], qrels: dict[str, list[tuple[str, str, int]]]) -> Path:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv (header, CRLF, as BEIR publishes)."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (folder / "qrels" / f"{split}.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return folder


TINY_DOCS = [
    {"_id": "D1", "title": "Glacier ice cores", "text": "Ice cores record past climate.\r\nBubbles hold old air.",
     "metadata": {"url": "https://example.org/1", "year": 2019, "authors": ["x", "y"], "title": "clash"}},
    {"_id": "d2", "title": "", "text": "Coral reefs bleach when the sea warms by a degree or two.", "metadata": {}},
    {"_id": "d 3", "title": "Volcanic winters", "text": "Sulphate aerosols cool the planet after eruptions."},
    {"_id": "d4", "title": "Tree rings", "text": "Ring widths follow the growing season's warmth."},
]
TINY_QUERIES = [{"_id": "q1", "text": "what do ice cores tell us about climate"},
                {"_id": "q2", "text": "why do reefs bleach"},
                {"_id": "q3", "text": "eruptions and cooling"},
                {"_id": "q4", "text": "a query judged only not relevant"}]
TINY_QRELS = {"test": [("q1", "D1", 2), ("q1", "d4", 1), ("q2", "d2", 1), ("q2", "d4", 0), ("q4", "d4", 0)],
              "dev": [("q3", "d 3", 1), ("q3", "missing", 1)]}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", TINY_DOCS, TINY_QUERIES, TINY_QRELS)


def test_import_writes_a_corpus_that_validates_with_its_golden_files(tiny_beir, tmp_path):
    result = beir.import_beir(tiny_beir, tmp_path / "out")
    assert result.documents == 4 and result.questions == {"dev": 1, "test": 2}
    assert result.left_out["test"] == {"not_relevant": 2, "unknown_doc": 0, "no_query": 0, "no_relevant": 1}
    assert result.left_out["dev"]["unknown_doc"] == 1
    docs = {d.doc_id: d for d in load_corpus(result.corpus)}
    first = docs[beir.doc_id_for("D1")]
    assert first.title == "Glacier ice cores"
    assert first.text == "# Glacier ice cores\n\nIce cores record past climate.\nBubbles hold old air.\n"
    front = (result.corpus / beir.doc_id_for("D1")).read_text().split("---")[1]
    assert "url: https://example.org/1" in front and "year: 2019" in front and "beir_title: clash" in front
    assert "authors" not in front  # a list is not scalar: left out
    assert docs[beir.doc_id_for("d2")].title.startswith("Coral reefs bleach")  # untitled: its first words
    test = read_golden(result.golden["test"], golden_tags(result.corpus))
    assert [q.id for q in test] == ["q1", "q2"]
    assert test[0].retrieval_only and [(e.doc_id, e.relevance) for e in test[0].evidence] == [("_d1.md", 2), ("d4.md", 1)]
    assert test[0].tags == ("tiny",)
    report = validate(result.corpus, list(result.golden.values()))
    assert report.ok, report.problems


def test_import_refuses_a_folder_that_is_not_beir_or_an_output_that_is_not_empty(tiny_beir, tmp_path):
    with pytest.raises(beir.BeirError, match="not a BEIR folder"):
        beir.import_beir(tmp_path, tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(beir.BeirError, match="not empty"):
        beir.import_beir(tiny_beir, tmp_path / "busy")


# --- retrieval-only golden lines ------------------------------------------------------------------------


def line(**fields) -> str:
    base = {"id": "r1", "question": "q?", "retrieval_only": True, "evidence": [{"doc_id": "a.md", "relevance": 2}],
            "tags": []}
    return json.dumps({k: v for k, v in {**base, **fields}.items() if v is not None})


def test_a_retrieval_only_line_needs_no_quote_facts_or_answer():
    question, problems = check_line(line(), "g.jsonl", 1)
    assert problems == [] and question.retrieval_only and question.evidence[0].relevance == 2


@pytest.mark.parametrize("fields, field", [
    ({"answer": "x"}, "answer"),
    ({"evidence": [{"doc_id": "a.md", "quote": "some quote of forty characters at least ok"}]}, "evidence[0]"),
    ({"evidence": [{"doc_id": "a.md", "relevance": 0}]}, "evidence[0]"),
    ({"evidence": [{"doc_id": "a.md", "relevance": 1.5}]}, "evidence[0]"),
    ({"evidence": []}, "evidence"),
    ({"evidence": [{"doc_id": "a.md", "relevance": 1}, {"doc_id": "a.md", "relevance": 2}]}, "evidence"),
    ({"question": None}, "question"),
    ({"retrieval_only": False}, "retrieval_only"),
])
def test_retrieval_only_shape_problems_are_named(fields, field):
    _, problems = check_line(line(**fields), "g.jsonl", 1)
    assert field in {p.field for p in problems}


def test_validate_checks_judged_documents_exist(tiny_beir, tmp_path):
    result = beir.import_beir(tiny_beir, tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(evidence=[{"doc_id": "_d1.md", "relevance": 1}, {"doc_id": "_d2.md", "relevance": 1}],
                        tags=["unanswerable"]) + "\n")
    problems = validate(result.corpus, [bad]).problems
    assert {p.field for p in problems} == {"evidence[1].doc_id", "tags"}
    assert "did you mean 'd2.md'" in next(p.message for p in problems if p.field == "evidence[1].doc_id")


# --- deep search and the run -------------------------------------------------------------------------------


class ManyChunks:
    """Four chunks per document, documents in order; records each k asked for."""

    def __init__(self, documents: int):
        self.hits = [Hit(Chunk(f"d{i}.md#{j}", f"d{i}.md", "t", 0, 1), 1.0 / (1 + 4 * i + j))
                     for i in range(documents) for j in range(4)]
        self.asked: list[int] = []

    def search(self, query: str, k: int) -> list[Hit]:
        self.asked.append(k)
        return self.hits[:k]


def test_search_documents_deepens_until_it_has_enough_documents():
    pipeline = ManyChunks(300)
    answer = search_documents(pipeline, "q", depth=100)
    assert pipeline.asked == [400]  # 4 x depth hits hold 100 documents already
    assert len(m.top_k_docs([h.chunk.doc_id for h in answer.retrieved], 10**6)) == 100
    pipeline = ManyChunks(50)  # fewer documents than the depth: one search, the index is exhausted
    search_documents(pipeline, "q", depth=100)
    assert pipeline.asked == [400]
    many = ManyChunks(300)
    many.hits = [Hit(Chunk(f"d{i // 8}.md#{i}", f"d{i // 8}.md", "t", 0, 1), 1.0) for i in range(2400)]
    search_documents(many, "q", depth=100)
    assert many.asked == [400, 800]  # eight chunks per document: 400 hits hold 50 documents, 800 hold 100


def test_eval_on_a_beir_folder_scores_document_metrics_only(tiny_beir, runs, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKATA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["eval", "--corpus", str(tiny_beir), "--config", "retriever=bm25"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "retrieval-only questions: answer and citation metrics not computed" in result.output
    assert "2 retrieval-only questions of split 'test'" in result.output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["metrics"]) == {m.DOC_NDCG_AT_10, m.DOC_RECALL_AT_100}
    assert summary["counts"]["retrieval_only"] == 2
    assert summary["metrics"][m.DOC_RECALL_AT_100] == 1.0  # four documents: every one is within 100
    samples = [json.loads(raw) for raw in (run / "samples.jsonl").read_text().splitlines()]
    assert all(s["retrieval_only"] and len(s["ranked_docs"]) == 4 and s["context"] == [] for s in samples)
    assert "fact_recall" not in result.output and "citation_precision" not in result.output
    again = CliRunner().invoke(app, ["eval", "--corpus", str(tiny_beir), "--split", "dev", "--config",
                                     "retriever=bm25"], catch_exceptions=False)
    assert again.exit_code == 0 and "1 retrieval-only questions of split 'dev'" in again.output


# --- SciFact: a slice, BM25, our doc_ndcg@10 against ranx's on the same run ----------------------------------


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(),
                    reason=f"SciFact (BEIR) is not at {SCIFACT}; its licence (CC BY-NC) keeps it out of the repository")
def test_scifact_slice_bm25_doc_ndcg_equals_ranx(tmp_path):
    from exercise.pipeline import build_pipeline

    queries = {q["_id"]: q for q in map(json.loads, (SCIFACT / "queries.jsonl").read_text().splitlines())}
    rows = [r.split("\t") for r in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    chosen = sorted({q for q, _, _ in rows}, key=int)[:40]
    wanted = {d for q, d, _ in rows if q in chosen}
    docs = [json.loads(raw) for raw in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    kept = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][:600]
    source = write_beir(tmp_path / "scifact", kept, [queries[q] for q in chosen],
                        {"test": [(q, d, int(s)) for q, d, s in rows if q in chosen]})
    result = beir.import_beir(source, tmp_path / "out")
    pipeline = build_pipeline(Config(retriever="bm25", cache_dir=str(tmp_path / "cache")), load_corpus(result.corpus))
    golden = read_golden(result.golden["test"], golden_tags(result.corpus))
    ours, ranx_run, qrels = {}, {}, {}
    for question in golden:
        ranking = m.top_k_docs([h.chunk.doc_id for h in search_documents(pipeline, question.question).retrieved],
                               m.DOC_DEPTH)
        judged = {e.doc_id: e.relevance for e in question.evidence}
        ours[question.id] = (m.doc_ndcg_at_k(ranking, judged, 10), m.judged_recall_at_k(ranking, judged, 100))
        ranx_run[question.id] = {d: float(len(ranking) - i) for i, d in enumerate(ranking)}
        qrels[question.id] = judged
    run = Run(ranx_run)
    evaluate(Qrels(qrels), run, ["ndcg@10", "recall@100"], return_mean=False)
    for qid, (ndcg, recall) in ours.items():
        assert ndcg == pytest.approx(run.scores["ndcg@10"][qid], abs=1e-9), qid
        assert recall == pytest.approx(run.scores["recall@100"][qid], abs=1e-9), qid
    mean_ndcg = sum(n for n, _ in ours.values()) / len(ours)
    assert 0.4 < mean_ndcg <= 1.0, f"BM25 on a SciFact slice scored doc_ndcg@10 {mean_ndcg:.3f}"
