"""The candidate's workspace: a deliberately naive RAG pipeline to measure and improve.

Start with contracts.py (the records and Protocols), then pipeline.py (how the stages are wired).
exercise/TASKS.md lists the numbered tasks; each `# TODO(task N)` in the code points at one.
"""
