"""wskit.inspect: the inspector as a notebook widget, in-process and in a real kernel."""

from __future__ import annotations

import secrets

import pytest

import wskit
from wskit.core.codes import CloseCode
from wskit.widgets.inspector import render

pytest.importorskip("ipywidgets")
pytestmark = pytest.mark.timeout(60)


async def test_the_view_shows_members_connections_and_closes_as_they_happen(
        start, clients, framework) -> None:
    srv = await start(framework)
    view = wskit.inspect(srv, interval=60)  # refreshed by hand below, not by the timer
    try:
        alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
        for c in (alice, bob):
            await c.join("lobby")
        await view.refresh()
        assert "<td>lobby</td><td>alice, bob</td>" in view.widget.value
        await srv.server.api.disconnect("bob", CloseCode.POLICY_VIOLATION, "banned")
        assert await bob.wait_closed(timeout=10) == CloseCode.POLICY_VIOLATION
        await view.refresh()
        html = view.widget.value
        assert "<td>lobby</td><td>alice</td>" in html
        assert "<td>bob</td><td>1008</td><td>banned</td>" in html
        assert "<td>1008</td><td>1</td>" in html
    finally:
        view.stop()


async def test_a_url_is_read_with_its_api_key(start, clients) -> None:
    key = secrets.token_urlsafe(24)
    srv = await start("fastapi", api_key=key)
    alice = await clients(srv, user="alice")
    await alice.join("lobby")
    good = wskit.Inspector((srv.http_url,), api_key=key)
    wrong = wskit.Inspector((srv.http_url,), api_key="wrong")
    assert (await good.refresh())[0]["rooms"] == {"lobby": ["alice"]}
    await wrong.refresh()
    assert "HTTP 401" in wrong.widget.value and "lobby" not in wrong.widget.value
    with pytest.raises(wskit.ConfigError, match="API key"):
        wskit.inspect(srv.http_url)


def test_outside_a_running_loop_it_says_where_to_call_it() -> None:
    with pytest.raises(wskit.ConfigError, match="running event loop"):
        wskit.inspect("http://127.0.0.1:1", api_key="k")


def test_names_and_reasons_are_escaped_and_rates_come_from_two_snapshots() -> None:
    def snap(t: float, posts: int) -> dict:
        return {"instance": "i<1>", "time": t, "draining": False, "backplane": None,
                "rooms": {"r": ["<img src=x onerror=alert(1)>"]}, "connections": [],
                "connectionCount": 0, "outboxLimit": 8,
                "counts": {"posts": posts, "deliveries": 0, "recovered": 0, "notRecovered": 0},
                "closes": {}, "recentCloses": [{"time": t, "user": None, "code": 4008,
                                                "reason": "<b>slow</b>"}]}
    html = render([snap(12.0, 50)], [snap(10.0, 10)])
    assert "<img" not in html and "&lt;img src=x" in html
    assert "<b>slow</b>" not in html and "i&lt;1&gt;" in html
    assert "messages/s <b>20.0</b>" in html


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_in_a_kernel_the_widget_model_follows_the_server(tmp_path) -> None:
    """The widget's model, as a front end receives it (comm messages, recorded by
    nbclient into the notebook's widget state), holds what the server did."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import wskit\nsrv = await wskit.serve('aiohttp', name='inspector-kernel-test')\n"
        "view = wskit.inspect(srv, interval=60)\nview",
        "alice = await wskit.Client(srv, user='alice').connect()\n"
        "await alice.join('watched-room')\nawait view.refresh()",
        "await alice.close()\nview.stop()\nawait srv.stop()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=90, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in nb.cells[0].outputs)  # displayed as a widget, not as text
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    values = [m["state"].get("value", "") for m in state.values()
              if m["model_name"] == "HTMLModel"]
    assert any("<td>watched-room</td><td>alice</td>" in v for v in values), values
