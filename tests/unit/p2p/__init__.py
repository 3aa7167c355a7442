"""Unit tests of p2p/."""
