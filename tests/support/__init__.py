"""Shared, non-test code of the test suite: nothing here is collected as a test, and no
test module imports another test module, only these.

- ``paths``: the repository's folders; ``net``: ``free_port``; ``polling``: ``wait_for``,
  the one polling helper.
- ``keys``: the tests' gateway and provider keys; ``stack``: the test stack's serve
  config (models, agents, test applications, gateway keys and limits) and ``Stack``.
- ``environment``: the process environment, set on import (tests/conftest.py imports it
  before anything else: Ray and Serve read it once, the cluster's processes inherit it).
- ``servers``, ``fault_proxy``, ``otlp``, ``agent_helpers``, ``cluster_autoscaler``:
  real servers on loopback, a fault-injecting proxy, an OTLP receiver, replica actors,
  the cluster-autoscaling scenario (its own process).
- ``issuer``, ``observability``, ``providers``, ``prune``, ``spans``: helpers that two
  test modules share.
"""
