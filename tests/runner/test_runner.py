"""Starting and stopping real servers: re-runs, bind failures, threads, kernels."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap

import pytest

import wskit
from wskit import CloseCode, ServerStartError
from wskit.devtools.ports import free_port
from wskit.exceptions import BackplaneUnavailable, ConfigError


async def test_rerunning_serve_with_same_name_replaces_the_server(clients, framework) -> None:
    port = free_port()
    first = await wskit.serve(framework, port=port, name="cell-3", backplane="none")
    try:
        client = await clients(first, user="a")
        # the same cell again: same name, same fixed port, no "address already in use"
        second = await wskit.serve(framework, port=port, name="cell-3", backplane="none")
        try:
            assert second.port == port and first.stopped and not second.stopped
            assert await client.wait_closed() == CloseCode.SERVICE_RESTART
            assert wskit.running()["cell-3"] is second
            again = await clients(second, user="a")
            assert again.welcome["userId"] == "a"
        finally:
            await second.stop()
    finally:
        await first.stop()
    assert "cell-3" not in wskit.running()


async def test_port_in_use_is_an_exception_not_an_exit(framework) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            await wskit.serve(framework, port=port, name="busy", backplane="none")
    assert "busy" not in wskit.running()


async def test_unreachable_redis_fails_where_the_server_is_started(framework) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(BackplaneUnavailable, match=f"cannot reach Redis at redis://127.0.0.1:{port}"):
        await wskit.serve(framework, name="noredis", backplane=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ConfigError, match="unknown backplane URL"):
        await wskit.serve(framework, name="badurl", backplane="kafka://x")
    with pytest.raises(ConfigError, match="framework must be one of"):
        await wskit.serve("flask")  # type: ignore[arg-type]


def test_threaded_server_start_error_is_raised_in_the_caller() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ServerStartError):
            wskit.serve_in_thread("aiohttp", port=busy.getsockname()[1], backplane="none")


def test_enable_nested_asyncio_is_opt_in() -> None:
    # importing wskit must not have patched asyncio
    assert not hasattr(asyncio, "_nest_patched")
    assert "nest_asyncio" not in sys.modules and "nest_asyncio2" not in sys.modules


KERNEL_TIMEOUT = 60


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kernel_survives_start_failures_and_interrupts() -> None:
    """A real IPython kernel: errors stay in the cell, 'interrupt kernel' works."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def run(code: str, timeout: float = KERNEL_TIMEOUT) -> dict:
            msg_id = kc.execute(textwrap.dedent(code), stop_on_error=False)
            reply = kc.get_shell_msg(timeout=timeout)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = kc.get_shell_msg(timeout=timeout)
            return reply["content"]

        setup = run("""
            import asyncio, socket, wskit
            busy = socket.socket(); busy.bind(("127.0.0.1", 0)); busy.listen()
        """)
        assert setup["status"] == "ok", setup
        for fw in ("aiohttp", "fastapi"):
            failed = run(f"await wskit.serve({fw!r}, port=busy.getsockname()[1], backplane='none')")
            assert failed["status"] == "error" and failed["ename"] == "ServerStartError", failed
        assert run("srv = await wskit.serve('fastapi', backplane='none', name='k')")["status"] == "ok"
        # a cell that blocks forever, interrupted like the Jupyter stop button
        msg_id = kc.execute("print('blocking', flush=True); await asyncio.sleep(3600)")
        while True:  # wait until the cell runs (it printed), so the interrupt lands in it
            msg = kc.get_iopub_msg(timeout=KERNEL_TIMEOUT)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                    and "blocking" in msg["content"].get("text", "")):
                break
        from queue import Empty

        for _ in range(10):  # as a user would, press stop again if the first press was early
            km.interrupt_kernel()
            try:
                reply = kc.get_shell_msg(timeout=5)
                break
            except Empty:
                continue
        else:
            raise AssertionError("the kernel ignored ten interrupts")
        # the blocked cell ended (KeyboardInterrupt), instead of the kernel
        assert reply["parent_header"]["msg_id"] == msg_id, reply
        assert reply["content"]["status"] == "error", reply["content"]
        # the kernel is alive and the server still serves
        check = run("""
            async with wskit.connect(srv, user='after') as c:
                assert c.welcome['userId'] == 'after'
            await srv.stop(); busy.close()
        """)
        assert check["status"] == "ok", check  # the kernel lives, and so does the server
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
