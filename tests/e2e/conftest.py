"""Fixtures of the end-to-end tests."""

from tests.e2e.apiservice import api

__all__ = ["api"]
