"""Sampling and loading: the seeded pair and view plans, and the fused path from a plan to a batch."""
