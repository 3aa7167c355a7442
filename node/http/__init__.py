"""The node's HTTP surface: API routes, events (SSE), metrics, OpenAPI, limits, errors and the explorer's static files."""
