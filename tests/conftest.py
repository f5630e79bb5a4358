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


def pytest_collection_modifyitems(items: list[object]) -> None:
    """Run order: the tests that need no shared Ray cluster first (unit, offline, and the
    cluster tier's tests that start Ray themselves or need only PostgreSQL or Redis),
    then those on the session's stack. Its dozen replicas and four engines, idle, still
    load a two-core machine: a CLI test that boots its own cluster beside them took
    twice as long. Order within each group is as collected (module fixtures intact)."""
    import pytest

    def on_stack(item: object) -> bool:
        return isinstance(item, pytest.Item) and "ray_cluster" in getattr(item, "fixturenames", ())

    items.sort(key=on_stack)  # stable: False (no shared cluster) first
