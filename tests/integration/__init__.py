"""Tests against one real node process."""
