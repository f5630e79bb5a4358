"""The gateway: the Serve ingress that authenticates callers and routes their calls."""
