"""The marketplace rules: the state interface and one module per concept, applied by the state transition."""
