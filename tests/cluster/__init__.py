"""The cluster tier: the shared local Ray cluster (see conftest.py)."""
