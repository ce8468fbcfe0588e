"""The lab's fixtures and hooks (test/lab/fixtures.py), shared with bench/."""

from lab.fixtures import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
from lab.fixtures import pytest_configure, pytest_sessionfinish  # noqa: F401
