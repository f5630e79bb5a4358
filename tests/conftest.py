"""The tests, in tiers by folder (``python -m pytest`` runs them all; each folder's
conftest.py says more):

- ``unit/``: no Ray (starting it fails there): in-process code, pure functions, local
  servers the test starts itself (`make unit`).
- ``offline/``: tools run over the repository's files: kustomize and
  kubernetes-validate, checkov, hadolint, promtool (`make offline`).
- ``cluster/``: the shared multi-node local Ray cluster with the test stack deployed on
  it, the session's servers, and tests that start Ray themselves (marked ``cluster``).
- ``support/``: shared code, no tests (builders of the test stack, keys, servers, the
  one polling helper ``wait_for``).

This file only sets the process environment, first (tests/support/environment.py): Ray
and Serve read it once, before any test module imports them, and the cluster's
processes inherit it.
"""

from tests.support import environment  # noqa: F401
