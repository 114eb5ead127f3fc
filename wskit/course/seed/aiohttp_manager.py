"""The seed's aiohttp WebSocket server, as written (see wskit.course.seed)."""
# ruff: noqa
from aiohttp import web, WSMsgType
import asyncio
import json

import wskit  # wskit: for the stand-in verify_token below

# NOTE: verify_token() is application-specific and must be implemented
SECRET_KEY = None  # wskit: None means WSKIT_SECRET or the development secret


def verify_token(token):  # wskit: the stand-in the seed asks for
    """Verify JWT token and return user_id, or None if invalid"""
    try:
        return wskit.verify_token(token, SECRET_KEY)
    except wskit.AuthError:
        return None


class WebSocketManager:
    def __init__(self):
        self.connections = {}  # user_id -> websocket
        self.rooms = {}        # room_id -> set of user_ids

    async def connect(self, user_id, ws):
        self.connections[user_id] = ws

    async def disconnect(self, user_id):
        if user_id in self.connections:
            del self.connections[user_id]
        # Remove from all rooms
        for room_id, members in self.rooms.items():
            members.discard(user_id)

    async def join_room(self, user_id, room_id):
        if room_id not in self.rooms:
            self.rooms[room_id] = set()
        self.rooms[room_id].add(user_id)

    async def broadcast_to_room(self, room_id, message, exclude=None):
        if room_id not in self.rooms:
            return
        for user_id in self.rooms[room_id]:
            if user_id != exclude and user_id in self.connections:
                ws = self.connections[user_id]
                await ws.send_json(message)

manager = WebSocketManager()

async def websocket_handler(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)

    # Authenticate
    token = request.query.get('token')
    user_id = verify_token(token)
    if not user_id:
        await ws.close(code=4001, message='Unauthorized')
        return ws

    await manager.connect(user_id, ws)

    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)

                if data['type'] == 'join':
                    await manager.join_room(user_id, data['roomId'])

                elif data['type'] == 'message':
                    await manager.broadcast_to_room(
                        data['roomId'],
                        {
                            'type': 'message',
                            'userId': user_id,
                            'content': data['content'],
                            'timestamp': time.time()
                        },
                        exclude=user_id
                    )

            elif msg.type == WSMsgType.ERROR:
                print(f'WebSocket error: {ws.exception()}')

    finally:
        await manager.disconnect(user_id)

    return ws


def make_app():  # wskit: an Application runs once, so lessons build a fresh one each time
    app = web.Application()
    app.router.add_get('/ws', websocket_handler)
    return app
