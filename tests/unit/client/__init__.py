"""Unit tests of client/."""
