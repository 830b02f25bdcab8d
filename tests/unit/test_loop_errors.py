"""The suite-wide rule of tests/conftest.py: an unhandled exception in a test's event loop
fails that test. Checked on the handler itself and on a real pytest run of a test that leaks
one (pytester runs it in-process, so these stay free of sockets and processes)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import LOOP_ERRORS, LoopErrors

pytest_plugins = ["pytester"]


def test_handler_records_an_exception_in_a_callback_and_describes_it() -> None:
    errors = LoopErrors()
    loop = errors.new_loop()
    try:
        def boom() -> None:
            raise ZeroDivisionError("from a callback")

        loop.call_soon(boom)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    recorded = errors.take()
    assert [type(c["exception"]) for c in recorded] == [ZeroDivisionError]
    text = LoopErrors.describe(recorded)
    assert "from a callback" in text and "in boom" in text
    assert errors.take() == []


def test_handler_ignores_contexts_without_an_exception() -> None:
    errors = LoopErrors()
    loop = errors.new_loop()
    try:
        loop.call_exception_handler({"message": "Unclosed client session"})
    finally:
        loop.close()
    assert errors.take() == []


LEAKY = '''
import asyncio

async def test_leaks_a_task_exception():
    async def fail():
        raise RuntimeError("nobody awaited me")

    task = asyncio.ensure_future(fail())
    await asyncio.sleep(0)
    del task  # dropped with its exception unretrieved

async def test_leaks_a_callback_exception():
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.01)

async def test_clean():
    await asyncio.sleep(0)

def test_sync():
    pass
'''


def test_a_test_whose_loop_logs_an_unhandled_exception_fails(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("from tests.conftest import *  # noqa: F403\n")
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    out = result.stdout.str()
    assert "RuntimeError: nobody awaited me" in out
    assert "ZeroDivisionError" in out
    assert "ERROR at teardown of test_leaks_a_task_exception" in out
    assert "ERROR at teardown of test_leaks_a_callback_exception" in out


async def test_the_suites_own_test_loops_carry_the_handler() -> None:
    assert asyncio.get_running_loop().get_exception_handler() == LOOP_ERRORS.handler
