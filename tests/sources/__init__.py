"""Tests of the source readers."""
