"""The evaluation harness: loads the corpus and golden set, runs a pipeline, scores it, reports.

Candidates run it; they do not need to change it. Metric definitions live in harness/metrics.py.
"""
