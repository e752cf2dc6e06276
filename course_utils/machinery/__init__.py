"""The course's machinery: what makes one notebook run on a laptop, a Colab T4 and an A100.

A learner can ignore this subpackage. It picks the profile (``profiles``), finds each profile's
weights (``loading``), keeps the real-scale memory bill in CPU rehearsals (``ledger``, ``rehearsal``),
predicts GPU runtimes (``runtime``), says what a notebook downloads (``downloads``), and sets up a
notebook and a Colab session (``notebook``, ``colab``, ``cache``).

Imports run one way: this subpackage uses the lesson helpers in ``course_utils``; the lesson
helpers never import it (tests/test_layers.py checks).
"""
