"""The interviewer's side of ragkata: grade a candidate's pipeline, draw the scorecard, export the bundle.

Start at grade.py. The candidate's code runs only inside worker.py, in a subprocess that sandbox.py
can kill; every score is computed here, in the parent, with harness/scoring.py.
"""
