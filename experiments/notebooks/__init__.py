"""Jupytext ports of the seed notebooks (python -m experiments.notebooks.NAME)."""
