"""Unit tests of marketplace_tx/."""
