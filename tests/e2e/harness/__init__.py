"""The one harness of the real-process tests (single nodes, testnets, fault scenarios).

Its parts, each used by `tests/e2e/node_process.py` (one node), `tests/e2e/testnet_harness.py`
(a testnet described by a `Manifest`) and `tests/e2e/fault_scenarios.py` (scenarios run
against a testnet):

- `waiting.wait_until`: the one way to wait, a condition polled until a deadline;
- `processes`: the pid-alive check, process states, and the tail of a node.log;
- `http_client`: urllib requests that never raise on 4xx/5xx and, when asked, honour
  429 `Retry-After` (bounded) like a good client;
- `ports`: free loopback ports below the ephemeral range;
- `config_file.edit_config`: edits a node's config.toml with node/config.py's writer;
- `manifest`: a testnet as data (validators, parameters, faults, network, perturbations);
- `namespaces`: nodes in Linux network namespaces, links cut by blackhole routes;
- `testnet_node.NodeHandle` and `testnet_checks.TestnetChecks`: one node of a testnet
  and the e2e checks (identical blocks, final transactions, conservation);
- `scenarios` and `load_generator`: fault scenarios as data and the load they send.
"""
