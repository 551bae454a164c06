"""A team's own corpus: manifest vocabularies, a folder without a manifest, the errors of a first try, and the
C YAML loader."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from harness import corpus as corpus_module
from harness.cli import main as cli_main
from harness.corpus import (CorpusError, corpus_files, corpus_hash, load_corpus, load_document, read_manifest,
                            skipped_files)
from harness.golden import GoldenError, golden_tags, read_golden
from harness.validate import validate

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

TEAM_MANIFEST = """\
required: [title, lang]
optional: [source]
facets:
  lang: [en, fr]
tags: [scifact]
"""
DOC = "---\ntitle: Claim 1\nlang: {lang}\n---\n# Claim 1\n\nAspirin lowers the risk of a first heart attack in adults.\n"
QUOTE = "Aspirin lowers the risk of a first heart attack in adults."


def team(tmp_path: Path, manifest: str | None = TEAM_MANIFEST, **files: str) -> Path:
    root = tmp_path / "team"
    root.mkdir(exist_ok=True)
    if manifest is not None:
        (root / "manifest.yaml").write_text(manifest)
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def question(doc_id: str = "claims/c1.md", tags: list[str] | None = None) -> dict:
    return {"id": "q1", "question": "Does aspirin lower heart attack risk?", "answerable": True,
            "answer": "Yes, it lowers the risk of a first heart attack.", "facts": ["first heart attack"],
            "evidence": [{"doc_id": doc_id, "quote": QUOTE}], "tags": tags if tags is not None else ["scifact"]}


def golden(tmp_path: Path, *lines: dict) -> Path:
    path = tmp_path / "team.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# --- Manifest vocabularies ---------------------------------------------------------------------

def test_declared_facet_value_loads_and_an_undeclared_one_names_the_manifest_and_the_allowed_values(tmp_path):
    root = team(tmp_path, **{"claims__c1.md": DOC.format(lang="fr")})
    (doc,) = load_corpus(root)
    assert (doc.doc_id, doc.title, doc.type, doc.product, doc.status) == ("claims/c1.md", "Claim 1", "", "", "current")
    (root / "claims/c1.md").write_text(DOC.format(lang="de"))
    with pytest.raises(CorpusError) as error:
        load_corpus(root)
    message = str(error.value)
    assert message.startswith(f"{root / 'claims/c1.md'}:3: field 'lang': value 'de'"), message
    assert "en, fr" in message and f"{root / 'manifest.yaml'}:3" in message


def test_the_shipped_vocabularies_live_in_the_shipped_manifest():
    manifest = read_manifest(ROOT / "corpus")
    assert manifest.required == ("title", "type", "product", "updated", "status")
    assert manifest.facets["product"] == ("object-storage", "queues", "functions", "platform")
    assert len(manifest.facets["type"]) == 10 and manifest.tags == ()
    fixture = read_manifest(FIXTURES / "corpus")  # the fixture keeps the shipped checks
    assert dataclasses.replace(fixture, path=manifest.path) == manifest


def test_an_undeclared_field_is_refused_only_when_the_manifest_lists_optional_fields(tmp_path):
    text = DOC.format(lang="en").replace("lang: en", "lang: en\nauthor: me")
    root = team(tmp_path, **{"c1.md": text})
    with pytest.raises(CorpusError, match=r"c1.md:4: field 'author': unknown metadata key; allowed: title, lang, "
                                          r"source.*add it to 'optional'"):
        load_corpus(root)
    (root / "manifest.yaml").write_text(TEAM_MANIFEST.replace("optional: [source]\n", ""))
    assert load_corpus(root)[0].title == "Claim 1"


def test_a_declared_team_tag_is_accepted_and_an_undeclared_one_is_refused(tmp_path):
    root = team(tmp_path, **{"claims__c1.md": DOC.format(lang="en")})
    path = golden(tmp_path, question())
    report = validate(root, [path])
    assert report.problems == [] and report.questions[0].tags == ("scifact",)
    assert [q.tags for q in read_golden(path, golden_tags(root))] == [("scifact",)]
    (root / "manifest.yaml").write_text(TEAM_MANIFEST.replace("tags: [scifact]", "tags: []"))
    (problem,) = validate(root, [path]).problems
    assert problem.field == "tags" and "'scifact'" in problem.message and "manifest.yaml" in problem.message
    with pytest.raises(GoldenError, match="unknown tag 'scifact'"):
        read_golden(path, golden_tags(root))


def test_manifest_problems_are_all_reported_with_their_lines(tmp_path):
    root = team(tmp_path, "required: title\nfacets:\n  lang: []\ncolour: blue\n", **{"a.md": "# A\n\nText.\n"})
    with pytest.raises(CorpusError) as error:
        read_manifest(root)
    lines = str(error.value).splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{root / 'manifest.yaml'}:4", "field 'colour'"], [f"{root / 'manifest.yaml'}:1", "field 'required'"],
        [f"{root / 'manifest.yaml'}:2", "field 'facets'"]], lines
    assert [str(p) for p in validate(root, []).problems] == lines


def test_the_manifest_is_not_a_document_but_is_part_of_the_corpus_hash(tmp_path):
    root = team(tmp_path, **{"a.md": "# A\n\nText.\n"})
    assert corpus_files(root) == [root / "a.md"] and skipped_files(root) == []
    before = corpus_hash(root)
    (root / "manifest.yaml").write_text(TEAM_MANIFEST.replace("fr]", "fr, de]"))
    assert corpus_hash(root) != before


# --- A folder without a manifest ---------------------------------------------------------------

def test_a_plain_folder_without_manifest_loads_with_derived_titles(tmp_path):
    root = team(tmp_path, None, **{
        "notes__aspirin.md": "Some intro.\n\n## Aspirin and the heart\n\nBody.\n",
        "page.html": "<html><body><h1>Vitamin D</h1><p>Text.</p></body></html>",
        "plain__heart-attack_risk.txt": "Note: this first line is text, not a header.\n\nMore text.\n",
        "titled.txt": "Title: Statins\nSource: PubMed\n\nStatins lower cholesterol.\n",
    })
    docs = {d.doc_id: d for d in load_corpus(root)}
    assert {k: v.title for k, v in docs.items()} == {
        "notes/aspirin.md": "Aspirin and the heart", "page.html": "Vitamin D",
        "plain/heart-attack_risk.txt": "heart attack risk", "titled.txt": "Statins"}
    assert docs["plain/heart-attack_risk.txt"].text.startswith("Note: this first line is text")
    assert docs["titled.txt"].text == "Statins lower cholesterol.\n"
    assert docs["notes/aspirin.md"].text.startswith("Some intro.")
    assert all(d.status == "current" and d.type == "" for d in docs.values())
    report = validate(root, [])
    assert report.problems == [], report.problems


# --- Errors of a first try ---------------------------------------------------------------------

def test_two_problems_in_one_document_are_both_reported(tmp_path):
    root = team(tmp_path, **{"c1.md": "---\nlang: de\n---\nText.\n"})
    with pytest.raises(CorpusError) as error:
        load_corpus(root)
    lines = str(error.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["field 'title'", "field 'lang'"], lines
    assert "missing; every document needs title, lang" in lines[0] and "'de'" in lines[1]


def test_every_malformed_text_header_line_is_reported(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("Title: T\nnot a header\nType: guide\nalso not one\n\nBody\n")
    with pytest.raises(CorpusError) as error:
        load_document(path, tmp_path)
    assert [(e.line, e.field) for e in error.value.problems] == [(2, "(header)"), (4, "(header)")]


def test_a_near_miss_doc_id_gets_did_you_mean(tmp_path):
    root = team(tmp_path, **{"claims__c1.md": DOC.format(lang="en"), "claims__c2.md": DOC.format(lang="fr")})
    (problem,) = validate(root, [golden(tmp_path, question("claim/c1.md"))]).problems
    assert problem.field == "evidence[0].doc_id" and "did you mean 'claims/c1.md'?" in problem.message
    (problem,) = validate(root, [golden(tmp_path, question("unrelated/zzzz.pdf"))]).problems
    assert "did you mean" not in problem.message


def test_skipped_files_are_listed(tmp_path, capsys):
    root = team(tmp_path, None, **{"a.md": "# A\n\nText.\n", "a.pdf": "%PDF", "docs__b.docx": "x", "notes.rtf": "x",
                                   "README.md": "# about", ".hidden__x.bin": "x"})
    assert skipped_files(root) == ["a.pdf", "docs/b.docx", "notes.rtf"]
    from harness.validate import main

    assert main(["--corpus", str(root), "--no-golden"]) == 0
    assert "skipped 3 files that are not .md, .html or .txt: a.pdf, docs/b.docx, notes.rtf" in capsys.readouterr().out


def test_eval_lists_skipped_files(tmp_path, runs, fake_pipeline_module, monkeypatch, capsys):
    root = tmp_path / "team"
    shutil.copytree(FIXTURES / "corpus", root)
    (root / "scan.pdf").write_text("%PDF")
    monkeypatch.setattr(sys, "argv", ["ragkata", "eval", "--corpus", str(root), "--golden",
                                      str(FIXTURES / "golden.jsonl"), "--pipeline", fake_pipeline_module])
    with pytest.raises(SystemExit) as exit_:
        cli_main()
    assert exit_.value.code == 0
    assert "skipped 1 file that is not .md, .html or .txt: scan.pdf" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["eval", "validate"])
def test_a_team_corpus_without_golden_stops_with_exit_2_and_one_line(tmp_path, monkeypatch, capsys, runs, command):
    root = team(tmp_path, **{"claims__c1.md": DOC.format(lang="en")})
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["ragkata", command, "--corpus", str(root)])
    with pytest.raises(SystemExit) as exit_:
        cli_main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert f"{root} is not the shipped corpus and no --golden was given" in err and "pass --golden FILE" in err
    assert not runs.exists()


# --- The C YAML loader -------------------------------------------------------------------------

def test_the_c_yaml_loader_is_used_and_loads_the_same_documents_as_the_python_one(monkeypatch):
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    assert corpus_module.YAML_LOADER is yaml.CSafeLoader
    fast = load_corpus(ROOT / "corpus")
    monkeypatch.setattr(corpus_module, "YAML_LOADER", yaml.SafeLoader)
    assert load_corpus(ROOT / "corpus") == fast
    assert sum(d.doc_id.endswith(".md") for d in fast) == 158
