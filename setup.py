"""Thin shim so that `pip install -e .` works with older pip; metadata lives in pyproject.toml."""
from setuptools import setup

setup()
