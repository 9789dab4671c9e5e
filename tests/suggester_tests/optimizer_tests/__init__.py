"""Tests of the pure optimizer library."""
