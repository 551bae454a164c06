"""The reference solution to exercise/TASKS.md, mirroring exercise/ file for file: `diff -r exercise grader/solutions`.

Run it with `ragkata eval --pipeline grader.solutions`. Not shipped to candidates.
"""
