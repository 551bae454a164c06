"""The per-text embedding cache (exercise/embedding_cache.py), with a fake encoder that records what it encodes.

Each text is encoded once per (model, backend), whatever chunk it sits in; a build killed between batches
keeps what it committed; two processes can fill one cache at once; a corrupt row or file is warned about
and rebuilt. No real model: the vectors are hashed bags of words.
"""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from exercise.contracts import Chunk
from exercise.embedding import EmbeddingCache
from exercise.embedding_cache import FILENAME, text_key

LOGGER = "exercise.embedding_cache"


class RecordingEncoder:
    """Deterministic bag-of-words vectors (hashed into 16 dimensions); records every batch it encodes.

    fail_on_batch=n raises on the n-th call (1-based), as a build killed part-way would stop.
    """

    def __init__(self, name: str = "fake-model", backend: str = "fp32", fail_on_batch: int = 0, delay_s: float = 0.0):
        self.name, self.backend = name, backend
        self.batches: list[list[str]] = []
        self.fail_on_batch, self.delay_s = fail_on_batch, delay_s

    @property
    def texts(self) -> list[str]:
        return [text for batch in self.batches for text in batch]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_on_batch and len(self.batches) + 1 == self.fail_on_batch:
            raise KeyboardInterrupt("killed while encoding")
        self.batches.append(list(texts))
        time.sleep(self.delay_s)
        vectors = np.zeros((len(texts), 16), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, zlib.crc32(word.encode()) % 16] += 1.0
            vectors[row, 15] += 0.5  # no all-zero row
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def chunks_of(texts: Sequence[str], prefix: str = "doc") -> list[Chunk]:
    return [Chunk(f"{prefix}#{n}", prefix, text, 0, len(text)) for n, text in enumerate(texts)]


TEXTS = [f"chunk number {n} about widget {n % 7} and colour {n % 3}" for n in range(40)]


def test_a_second_build_encodes_only_the_texts_it_has_not_seen(tmp_path: Path) -> None:
    encoder = RecordingEncoder()
    first = EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:30]), encoder)
    assert sorted(encoder.texts) == sorted(TEXTS[:30])
    cache = EmbeddingCache(tmp_path)  # a new process, as far as the cache knows
    second = cache.load_or_build(chunks_of(TEXTS[10:40], prefix="other-chunker"), encoder)
    assert sorted(encoder.texts[30:]) == sorted(TEXTS[30:40])
    assert cache.last_build == {**cache.last_build, "cached": False, "chunks": 30, "encoded": 10}
    assert second.dtype == np.float32 and second.shape == (30, 16)
    assert np.array_equal(second[:20], first[10:30])  # the same text gives the same row, whatever its chunk
    assert np.array_equal(second[20:], RecordingEncoder().encode(TEXTS[30:40]))  # rows in chunk order
    cache.load_or_build(chunks_of(TEXTS), encoder)
    assert cache.last_build["cached"] is True and cache.last_build["encoded"] == 0 and len(encoder.texts) == 40
    cache.close()  # the connection stays open between calls; closing it checkpoints the WAL away
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


def test_identical_texts_in_different_chunks_are_encoded_once(tmp_path: Path) -> None:
    encoder = RecordingEncoder()
    texts = ["the same boilerplate footer", "a unique text", "the same boilerplate footer"]
    cache = EmbeddingCache(tmp_path)
    vectors = cache.load_or_build(chunks_of(texts), encoder)
    assert encoder.texts == ["the same boilerplate footer", "a unique text"]
    assert cache.last_build["encoded"] == 2 and np.array_equal(vectors[0], vectors[2])


@pytest.mark.parametrize("other", [RecordingEncoder(name="another-model"), RecordingEncoder(backend="int8")],
                         ids=["model", "backend"])
def test_another_model_or_backend_never_reuses_the_vectors(tmp_path: Path, other: RecordingEncoder) -> None:
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:5]), RecordingEncoder())
    cache = EmbeddingCache(tmp_path)
    cache.load_or_build(chunks_of(TEXTS[:5]), other)
    assert other.texts == TEXTS[:5] and cache.last_build["cached"] is False
    assert text_key("m", "fp32", "t") != text_key("m", "int8", "t") != text_key("m2", "fp32", "t")


def test_an_encoder_that_names_no_backend_shares_with_no_other(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:3]), RecordingEncoder())
    unnamed = RecordingEncoder()
    del unnamed.backend  # a candidate's own encoder, written before backends existed
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:3]), unnamed)
    assert unnamed.texts == TEXTS[:3]


def test_a_build_killed_after_n_batches_keeps_them_and_the_next_build_encodes_only_the_rest(tmp_path: Path) -> None:
    dying = RecordingEncoder(fail_on_batch=4)  # batches 1-3 are committed, the 4th never returns
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(tmp_path, batch_size=8).load_or_build(chunks_of(TEXTS), dying)
    assert len(dying.texts) == 24
    encoder = RecordingEncoder()
    cache = EmbeddingCache(tmp_path, batch_size=8)
    vectors = cache.load_or_build(chunks_of(TEXTS), encoder)
    assert encoder.texts == TEXTS[24:] and cache.last_build["encoded"] == 16
    assert [len(b) for b in encoder.batches] == [8, 8]
    assert np.array_equal(vectors, RecordingEncoder().encode(TEXTS))


def build_in_a_process(cache_dir: str, texts: list[str], out: str) -> None:
    """One of two processes filling the same cache at once; saves its vectors and what it encoded."""
    encoder = RecordingEncoder(delay_s=0.02)
    vectors = EmbeddingCache(cache_dir, batch_size=5).load_or_build(chunks_of(texts), encoder)
    np.save(out, vectors)
    Path(out + ".encoded").write_text(str(len(encoder.texts)))


def test_two_processes_filling_one_cache_at_once_both_finish_with_equal_vectors(tmp_path: Path) -> None:
    texts = [f"{t} in some longer sentence, copy {n}" for n in range(5) for t in TEXTS]  # 200 texts, 40 batches
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=build_in_a_process, args=(str(tmp_path / "cache"), texts, str(tmp_path / f"{n}.npy")))
               for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    first, second = np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy")
    assert first.shape == (200, 16) and np.array_equal(first, second)
    assert np.array_equal(first, RecordingEncoder().encode(texts))
    with sqlite3.connect(tmp_path / "cache" / FILENAME) as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone() == (200,)
    encoded = [int((tmp_path / f"{n}.npy.encoded").read_text()) for n in range(2)]
    assert sum(encoded) >= 200 and max(encoded) <= 200  # each encoded what the other had not written yet


def corrupt_rows(path: Path) -> None:
    """Row 0: a blob too short; row 1: NaN; row 2: a dim that disagrees with its blob and every other row."""
    with sqlite3.connect(path) as db:
        keys = [text_key("fake-model", "fp32", t) for t in TEXTS[:3]]
        db.execute("UPDATE vectors SET vector = substr(vector, 1, 20) WHERE key = ?", (keys[0],))
        db.execute("UPDATE vectors SET vector = ? WHERE key = ?", (np.full(16, np.nan, np.float32).tobytes(), keys[1]))
        db.execute("UPDATE vectors SET dim = 4, vector = substr(vector, 1, 16) WHERE key = ?", (keys[2],))


def test_corrupt_rows_are_warned_about_deleted_and_re_encoded(tmp_path: Path, caplog) -> None:
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS), RecordingEncoder())
    corrupt_rows(tmp_path / FILENAME)
    encoder = RecordingEncoder()
    cache = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        vectors = cache.load_or_build(chunks_of(TEXTS), encoder)
    assert str(tmp_path / FILENAME) in caplog.text and "3 vector(s) of the wrong length or with non-finite" in caplog.text
    assert encoder.texts == TEXTS[:3] and cache.last_build["encoded"] == 3
    assert np.array_equal(vectors, RecordingEncoder().encode(TEXTS))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cache.load_or_build(chunks_of(TEXTS), encoder)
    assert cache.last_build["cached"] is True and caplog.text == ""


FILE_CORRUPTIONS = {
    "garbage": lambda path: path.write_bytes(b"this is not a database, just some bytes" * 200),
    "header overwritten": lambda path: path.write_bytes(b"\0" * 100 + path.read_bytes()[100:]),
    "pages scrambled": lambda path: path.write_bytes(path.read_bytes()[:4096] + b"\xa5" * (path.stat().st_size - 4096)),
}


@pytest.mark.parametrize("corrupt", FILE_CORRUPTIONS.values(), ids=FILE_CORRUPTIONS.keys())
def test_an_unreadable_database_file_is_warned_about_deleted_and_rebuilt(tmp_path: Path, corrupt, caplog) -> None:
    expected = EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS), RecordingEncoder())
    corrupt(tmp_path / FILENAME)
    encoder = RecordingEncoder()
    cache = EmbeddingCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rebuilt = cache.load_or_build(chunks_of(TEXTS), encoder)
    assert f"corrupt embedding cache {tmp_path / FILENAME}: unreadable database" in caplog.text
    assert encoder.texts == TEXTS and np.array_equal(rebuilt, expected)
    cache.load_or_build(chunks_of(TEXTS), encoder)
    assert cache.last_build["cached"] is True and len(encoder.texts) == len(TEXTS)


def test_a_locked_database_is_an_error_not_a_corruption(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:2]), RecordingEncoder())
    holder = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the busy timeout
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            EmbeddingCache(tmp_path, timeout_s=0.2).load_or_build(chunks_of(TEXTS[:4]), RecordingEncoder())
    finally:
        holder.rollback()
        holder.close()
    assert (tmp_path / FILENAME).exists()
    cache = EmbeddingCache(tmp_path)
    cache.load_or_build(chunks_of(TEXTS[:2]), RecordingEncoder())
    assert cache.last_build["cached"] is True  # nothing was deleted


def test_files_of_the_old_whole_list_format_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "0123abcd.npy").write_bytes(b"old index")
    (tmp_path / "0123abcd.json").write_text("{}")
    cache = EmbeddingCache(tmp_path)
    vectors = cache.load_or_build(chunks_of(TEXTS[:3]), RecordingEncoder())
    assert vectors.shape == (3, 16) and (tmp_path / "0123abcd.npy").read_bytes() == b"old index"


def test_an_encoder_returning_the_wrong_shape_or_non_finite_values_stores_nothing(tmp_path: Path) -> None:
    class Broken(RecordingEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            return np.full((len(texts), 16), np.inf, np.float32)

    with pytest.raises(ValueError, match="non-finite"):
        EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:3]), Broken())
    encoder = RecordingEncoder()
    EmbeddingCache(tmp_path).load_or_build(chunks_of(TEXTS[:3]), encoder)
    assert encoder.texts == TEXTS[:3]


def test_progress_is_reported_before_the_first_batch_and_after_each_one_up_to_the_total(tmp_path: Path,
                                                                                        caplog) -> None:
    texts = [f"text {n}" for n in range(150)]
    EmbeddingCache(tmp_path).load_or_build(chunks_of(texts[:10]), RecordingEncoder())  # 10 cached already
    calls: list[tuple[int, int]] = []
    encoder = RecordingEncoder()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        EmbeddingCache(tmp_path, batch_size=64).load_or_build(chunks_of(texts), encoder,
                                                              progress=lambda done, total: calls.append((done, total)))
    assert [len(batch) for batch in encoder.batches] == [16, 32, 64, 28]  # small first batches: a figure comes soon
    assert calls == [(0, 140), (16, 140), (48, 140), (112, 140), (140, 140)]
    assert [r.progress for r in caplog.records if hasattr(r, "progress")] == calls  # the harness shows these
    calls.clear()
    EmbeddingCache(tmp_path).load_or_build(chunks_of(texts), encoder, progress=lambda d, t: calls.append((d, t)))
    assert calls == []  # everything cached: nothing to report
