"""Scoring model outputs: GSM8K final answers, and subject-predicate-object triples.

Each metric is a small pure function so a notebook can show it on one example before using it on
a whole evaluation set.
"""

from __future__ import annotations

# --- GSM8K answers ---------------------------------------------------------------------------

# --- triples (subject, predicate, object) ------------------------------------------------------
