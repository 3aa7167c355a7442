"""Unit tests of consensus/."""
