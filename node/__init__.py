"""The node: storage, block production, the HTTP API and configuration, wired together."""
