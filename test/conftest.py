"""The lab's fixtures and hooks (test/lab/fixtures.py), shared with bench/."""

from lab.fixtures import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
from lab.fixtures import pytest_configure, pytest_sessionfinish  # noqa: F401


def pytest_report_header(config):  # pylint: disable=unused-argument
    """Which Salt and Python this run's layers run on: `make test` runs them on several."""
    import platform  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    import salt.version  # pylint: disable=import-outside-toplevel

    return (f"cloudify_ha: Salt {salt.version.__version__} on Python "
            f"{platform.python_version()} ({sys.prefix})")
