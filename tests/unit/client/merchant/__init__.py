"""Unit tests of client/merchant/ (the merchant agent, webhooks and reports)."""
