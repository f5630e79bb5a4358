"""The unit tier: no Ray (see conftest.py)."""
