"""`make bench`: the lab's fixtures (test/lab/fixtures.py) and the bench's options."""

from lab.fixtures import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
from lab.fixtures import pytest_configure, pytest_sessionfinish  # noqa: F401


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true",
                     help="one repetition, N=3, T=0 only: a smoke run of the benchmarks")
    parser.addoption("--bench-sizes", default="3,5,7",
                     help="comma-separated cluster sizes N to measure (default 3,5,7)")
    parser.addoption("--bench-repeats", type=int, default=3,
                     help="runs of each measurement; the table shows their median, min and max "
                          "(default 3; 1 with --bench-quick)")
    parser.addoption("--bench-profile", action="store_true",
                     help="also profile a build with py-spy (make bench PROFILE=1)")
