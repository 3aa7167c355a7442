"""What runs on a user's machine: the HTTP client, transaction builders, sealing, verification, keys, testnets and the CLI's command groups."""
