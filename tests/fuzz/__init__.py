"""Fuzz tests of every decoder and parser."""
