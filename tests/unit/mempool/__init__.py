"""Unit tests of mempool/."""
