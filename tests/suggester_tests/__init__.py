"""Tests of the suggester service."""
