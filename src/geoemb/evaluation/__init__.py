"""Evaluator objects run by ``evaluate.py`` (one module per workflow)."""

from geoemb.evaluation.base import Evaluator

__all__ = ["Evaluator"]
