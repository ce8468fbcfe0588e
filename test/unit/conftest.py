"""Fixtures of the unit tests."""

import pytest

from pki_setup import make_pki


@pytest.fixture(scope="module")
def pki():
    """pki_setup.make_pki(): a valid RSA database PKI and every key 4.6 refuses, as PEM text."""
    return make_pki()
