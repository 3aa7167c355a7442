"""End to end: testnets of node processes, the CLI as a subprocess, a real browser, and the one harness they share."""
