"""Not collected by the suite (not test_*.py): tests/test_parallel_suite.py runs it under
pytest-xdist to see that a group of tests stays on one worker."""

import os

import pytest

TESTS_PER_KIND = 6


@pytest.fixture(scope="module")
def module_process_id() -> int:
    return os.getpid()


@pytest.mark.parametrize("index", range(TESTS_PER_KIND))
def test_uses_a_module_scoped_fixture(module_process_id: int, index: int) -> None:
    assert module_process_id == os.getpid()


@pytest.mark.parametrize("index", range(TESTS_PER_KIND))
def test_of_the_same_module(index: int) -> None:
    assert index < TESTS_PER_KIND
