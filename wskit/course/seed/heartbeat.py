"""The seed's heartbeat, as written (see wskit.course.seed), on the seed's FastAPI manager."""
# ruff: noqa
import asyncio
import logging

from fastapi import FastAPI, WebSocket  # wskit: the seed uses these names unimported

from .fastapi_manager import manager  # wskit: the seed's ConnectionManager

logger = logging.getLogger(__name__)

async def heartbeat(websocket: WebSocket, user_id: str, interval: int = 30):
    """Send periodic pings to keep connection alive"""
    try:
        while True:
            await asyncio.sleep(interval)
            await websocket.send_json({'type': 'ping'})
    except asyncio.CancelledError:
        # Normal shutdown - task was cancelled
        logger.debug(f"Heartbeat cancelled for user {user_id}")
        raise
    except Exception as e:
        # Unexpected error - log and allow cleanup
        logger.error(f"Heartbeat failed for user {user_id}: {e}")
        raise

def on_heartbeat_done(task: asyncio.Task, websocket: WebSocket, user_id: str):
    """Monitor heartbeat task completion and handle failures"""
    try:
        task.result()  # Will raise if task failed
    except asyncio.CancelledError:
        # Normal cancellation - no action needed
        pass
    except Exception as e:
        # Heartbeat failed unexpectedly - close connection
        logger.error(f"Heartbeat task failed for user {user_id}: {e}")
        asyncio.create_task(websocket.close(code=1011, reason="Heartbeat failed"))

app = FastAPI()  # wskit: somewhere to mount the endpoint

# Start heartbeat task on connect
@app.websocket("/ws/{user_id}")  # wskit: the seed shows the function without a route
async def websocket_endpoint(websocket: WebSocket, user_id: str):
    await manager.connect(websocket, user_id)

    # Create heartbeat task with failure monitoring
    heartbeat_task = asyncio.create_task(heartbeat(websocket, user_id))
    heartbeat_task.add_done_callback(
        lambda t: on_heartbeat_done(t, websocket, user_id)
    )

    try:
        while True:
            data = await websocket.receive_json()
            if data.get('type') == 'pong':
                continue  # Heartbeat response
            # Handle other messages...
    finally:
        # Cancel heartbeat and cleanup
        heartbeat_task.cancel()
        try:
            await heartbeat_task  # Wait for cancellation to complete
        except asyncio.CancelledError:
            pass
        manager.disconnect(user_id)
