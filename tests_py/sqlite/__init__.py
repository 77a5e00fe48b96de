"""Tests of the SQLite engine (queuert._sqlite). A package, so that its
conftest.py does not shadow tests_py/conftest.py as the module "conftest"."""
