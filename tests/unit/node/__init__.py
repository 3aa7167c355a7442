"""Unit tests of node/."""
