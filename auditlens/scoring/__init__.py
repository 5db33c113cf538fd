"""Scoring helpers being moved: the misalignment score and the likelihood contrast."""
