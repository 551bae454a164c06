"""The reference solution to exercise/TASKS.md, mirroring the modules a candidate changes path for path.

chunking.py, retrieval.py, generation.py and pipeline.py sit where exercise/ has them, so
`diff exercise/retrieval.py grader/solutions/retrieval.py` shows what a task expects (changes are marked
`# task N:`). contracts.py, config.py and embedding.py are not copied: the reference imports the starter's.
Run it with `ragkata eval --pipeline grader.solutions`. Not shipped to candidates.
"""
