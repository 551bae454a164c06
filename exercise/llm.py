"""A language-model generator: the Generator Protocol answered by any OpenAI-compatible chat endpoint.

Chosen with `--config generator=llm`; the extractive generator stays the offline default. One code path
reaches a llama.cpp server, Ollama, vLLM, LM Studio or a hosted API. The prompt is exercise/prompt.md;
sources are numbered [1]..[n] in context order and the reply's [n] markers become chunk-id citations.
Replies are cached on disk, so a second run of the same questions costs nothing. stream() is generate()
with the reply's text handed over piece by piece as it arrives (the playground shows it as it comes).
Left out on purpose: tool calls, counting tokens before a call, and any check that an answer
is supported by what it cites (that is task 4's question, for this generator as for the extractive one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import openai

from .config import Config
from .contracts import Chunk, Generation, Usage

ABSTAIN_PHRASE = "I cannot answer from the sources."  # the prompt asks for it; a reply containing it abstains
PROMPT_PATH = Path(__file__).with_name("prompt.md")
PLACEHOLDERS = ("{sources}", "{question}", "{abstain}")  # each must appear in the prompt file
NO_KEY = "not-needed"  # sent when the key's environment variable is unset; a local server ignores it
TRIES = 3  # calls per question before giving up, the first one included
BACKOFF_S = 1.0  # wait before the second try; doubles before each further one

_PLACEHOLDER = re.compile(r"\{(sources|question|abstain)\}")
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)  # notes for the reader of prompt.md, not sent to the model
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [2] or [1, 3]
_RETRIED_STATUS = {408, 429}  # plus every 5xx


class LLMError(RuntimeError):
    """The endpoint could not answer; the message names the host and the cause, never the API key."""


def render_prompt(template: str, question: str, context: Sequence[Chunk]) -> str:
    """Fill the template's {sources}, {question} and {abstain}; sources are "[n] text", numbered from 1.

    "Q: {question}\\n{sources}\\n{abstain}" with chunks "a", "b" -> "Q: why?\\n[1] a\\n\\n[2] b\\nI cannot
    answer from the sources." One pass, so a question containing "{sources}" stays as typed.
    <!-- comments --> are dropped.
    """
    template = _COMMENT.sub("", template)
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise ValueError(f"the prompt lacks {', '.join(missing)}; it must contain each of {', '.join(PLACEHOLDERS)} "
                         "exactly as written, braces included (see exercise/prompt.md)")
    values = {
        "sources": "\n\n".join(f"[{n}] {chunk.text.strip()}" for n, chunk in enumerate(context, start=1)),
        "question": question.strip(),
        "abstain": ABSTAIN_PHRASE,
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template).strip()


def parse_reply(reply: str, chunk_ids: Sequence[str]) -> Generation:
    """Turn the model's reply into a Generation: [n] markers cite chunk_ids[n-1].

    Citations follow first appearance, without repeats. A marker naming no source ([0], or [7] with three
    sources) stays as the invalid id "[7]", so citation_valid shows it. A reply containing ABSTAIN_PHRASE
    (case and spacing aside) abstains and cites nothing, whatever else it says. The text is the reply, stripped.
    "Port 9100 [2][2], see [7]." with ids (a, b) -> citations ("b", "[7]").
    """
    text = reply.strip()
    if " ".join(ABSTAIN_PHRASE.lower().split()) in " ".join(text.lower().split()):
        return Generation(text=text, abstained=True)
    cited = []
    for match in _MARKER.finditer(text):
        for raw in match.group(1).split(","):
            n = int(raw)
            cited.append(chunk_ids[n - 1] if 1 <= n <= len(chunk_ids) else f"[{raw.strip()}]")
    return Generation(text=text, citations=tuple(dict.fromkeys(cited)))


def cost_usd(prompt_tokens: int, completion_tokens: int, price_in: float, price_out: float) -> float:
    """Prices are USD per million tokens: (1,000 in, 500 out) at (2.0, 8.0) -> 0.002 + 0.004 = 0.006."""
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000


def cache_key(base_url: str, model: str, messages: Sequence[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 of everything that shapes the reply: endpoint, model, messages and sampling parameters.

    The API key is not part of it (it never reaches the disk), and neither is the time-out.
    """
    request = {"base_url": base_url.rstrip("/"), "model": model, "messages": list(messages), "params": params}
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class ReplyCache:
    """One JSON file per cache key under `directory`, written atomically (a temporary file, then a rename)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.directory / f"{key}.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # a miss; an unreadable file is overwritten by the next put

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(entry, out, ensure_ascii=False, indent=1)
            os.replace(temporary, self.directory / f"{key}.json")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def is_retried(error: Exception) -> bool:
    """Time-outs, 408, 429 and 5xx are worth another try; a refused connection or a 4xx is not."""
    if isinstance(error, openai.APITimeoutError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in _RETRIED_STATUS or error.status_code >= 500
    return False


class LLMGenerator:
    """Asks a chat model to answer from numbered sources; each Generation carries the call's Usage."""

    def __init__(self, config: Config, prompt_path: str | Path = PROMPT_PATH,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.template = Path(prompt_path).read_text(encoding="utf-8")
        try:
            render_prompt(self.template, "", [])  # refuse a prompt without its placeholders now, not per question
        except ValueError as error:
            raise ValueError(f"{prompt_path}: {error}") from None
        parts = urlsplit(config.llm_base_url)  # host and port only: a URL may carry user:password@
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "an unparsable URL")
        self._key = os.environ.get(config.llm_api_key_env) or NO_KEY  # kept here only, never written anywhere
        self.client = openai.OpenAI(base_url=config.llm_base_url, api_key=self._key,
                                    timeout=config.llm_timeout_s, max_retries=0)  # retries are ours, below
        self.cache = ReplyCache(Path(config.cache_dir) / "llm") if config.llm_cache else None
        self.sleep = sleep

    def generate(self, question: str, context: Sequence[Chunk]) -> Generation:
        if not context:  # nothing to ground an answer in: abstain without paying for a call
            return Generation(text=ABSTAIN_PHRASE, abstained=True)
        messages = [{"role": "user", "content": render_prompt(self.template, question, context)}]
        params = {"max_tokens": self.config.llm_max_tokens, "temperature": self.config.llm_temperature,
                  "seed": self.config.llm_seed}
        key = cache_key(self.config.llm_base_url, self.config.llm_model, messages, params)
        entry = self.cache.get(key) if self.cache else None
        if entry is not None:
            usage = Usage(entry["prompt_tokens"], entry["completion_tokens"], 0.0, cached=True, calls=0)
        else:
            entry = self._complete(messages, params)
            if self.cache:
                self.cache.put(key, entry)
            usage = Usage(entry["prompt_tokens"], entry["completion_tokens"],
                          cost_usd(entry["prompt_tokens"], entry["completion_tokens"],
                                   self.config.llm_price_in, self.config.llm_price_out), cached=False, calls=1)
        return dataclasses.replace(parse_reply(entry["reply"], [chunk.chunk_id for chunk in context]), usage=usage)

    def stream(self, question: str, context: Sequence[Chunk], on_text: Callable[[str], None]) -> Generation:
        """generate(), handing the reply's text to on_text piece by piece as the server sends it.

        A cached reply, or the abstention without sources, arrives as one piece. One try, no retries: pieces
        already shown cannot be taken back. The Generation and the cache entry are generate()'s, except that a
        server that reports no usage while streaming (llama.cpp's) gives zero tokens and its reply is not cached.
        """
        messages = [{"role": "user", "content": render_prompt(self.template, question, context)}]
        params = {"max_tokens": self.config.llm_max_tokens, "temperature": self.config.llm_temperature,
                  "seed": self.config.llm_seed}
        key = cache_key(self.config.llm_base_url, self.config.llm_model, messages, params)
        if not context or (self.cache and self.cache.get(key) is not None):
            generation = self.generate(question, context)
            on_text(generation.text)
            return generation
        pieces, usage, model = [], None, self.config.llm_model
        try:
            for event in self.client.chat.completions.create(model=self.config.llm_model, messages=messages, stream=True,
                                                             stream_options={"include_usage": True}, **params):
                usage, model = event.usage or usage, event.model or model
                piece = event.choices[0].delta.content if event.choices else None
                if piece:
                    pieces.append(piece)
                    on_text(piece)
        except openai.APIError as error:
            raise LLMError(f"{self.config.llm_model} at {self.host} failed while streaming: {self._cause(error)}") from None
        prompt_tokens, completion_tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        if self.cache and usage:
            self.cache.put(key, {"reply": "".join(pieces), "prompt_tokens": prompt_tokens,
                                 "completion_tokens": completion_tokens, "model": model,
                                 "request": {"base_url": self.config.llm_base_url, "model": self.config.llm_model,
                                             "params": params}})
        spent = cost_usd(prompt_tokens, completion_tokens, self.config.llm_price_in, self.config.llm_price_out)
        return dataclasses.replace(parse_reply("".join(pieces), [chunk.chunk_id for chunk in context]),
                                   usage=Usage(prompt_tokens, completion_tokens, spent, cached=False, calls=1))

    def _complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        """One chat completion, tried up to TRIES times with exponential backoff; the cache entry it makes."""
        for attempt in range(TRIES):
            try:
                response = self.client.chat.completions.create(model=self.config.llm_model, messages=messages, **params)
                break
            except openai.APIError as error:
                if not is_retried(error) or attempt == TRIES - 1:
                    tries = f"after {attempt + 1} tries" if attempt else "on the first try"
                    cause = self._cause(error)
                    raise LLMError(f"{self.config.llm_model} at {self.host} failed {tries}: {cause}") from None
                self.sleep(BACKOFF_S * 2**attempt)
        usage = response.usage
        return {
            "reply": (response.choices[0].message.content or "") if response.choices else "",
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "model": response.model,  # as the server names it, which may differ from llm_model
            "request": {"base_url": self.config.llm_base_url, "model": self.config.llm_model, "params": params},
        }

    def _cause(self, error: openai.APIError) -> str:
        """A short cause for the error message, with the API key blanked out wherever the server echoed it."""
        if isinstance(error, openai.APITimeoutError):
            cause = f"no reply within {self.config.llm_timeout_s:g} s (--config llm_timeout_s=...)"
        elif isinstance(error, openai.APIStatusError):
            cause = error.message  # "Error code: 503 - {...}", the server's own words
        elif isinstance(error, openai.APIConnectionError):
            cause = f"cannot connect ({error.message}); is the server running at {self.host}?"
        else:
            cause = f"{type(error).__name__}: {error.message}"
        if self._key != NO_KEY:
            cause = cause.replace(self._key, "***")
        return cause[:300]
