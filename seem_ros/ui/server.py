"""``seem_ui``: the teleop page's web server (aiohttp) around :class:`~seem_ros.ui.bridge.UiBridge`.

Run beside a seem node, with the camera remapped as the node's::

    seem-ui --ros-args -r image:=/camera/image_raw            # then open http://127.0.0.1:8080/
    seem-ui --ros-args -p host:=0.0.0.0 -p token:=SECRET       # LAN: http://ROBOT:8080/?token=SECRET

Routes: ``/`` the page, ``/static/<name>`` its own assets only (a fixed list, nothing else on
disk is reachable), ``/ws`` the WebSocket. The server sends each page binary *view* messages
(:func:`~seem_ros.ui.bridge.view_message`) and JSON ``status``, ``objects``, ``reply`` and
``error`` messages; per page and kind only the newest unsent one is kept, so a slow page skips
frames and never builds a queue. Requests (:mod:`seem_ros.ui.protocol`) are validated here and
refused with an ``error`` reply that names the problem; nothing unvalidated reaches the node.

Security: binds to loopback by default. Any other address needs the ``token`` parameter, which
pages then present (``?token=``); WebSocket upgrades from another origin are refused, so other
web sites in the same browser cannot drive the robot.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import signal
import sys
import threading
from importlib import resources
from typing import Dict, List, Optional, Set
from urllib.parse import urlsplit

import rclpy
from aiohttp import WSMsgType, web
from rclpy.executors import MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from . import protocol as proto
from .bridge import NodeUnavailable, UiBridge, View, view_message

ASSETS = {'index.html': 'text/html', 'app.js': 'text/javascript', 'mapping.js': 'text/javascript',
          'style.css': 'text/css'}
WS_FRAME_LIMIT = 4 * proto.MAX_MESSAGE_BYTES
"""Messages up to this size are read and refused with a reply; larger ones close the connection."""
STATUS_PERIOD_S = 1.0
EXIT_BAD_PARAMETERS = 2


def is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Page:
    """One connected page: its WebSocket, rate limit, and the newest unsent message of each kind."""

    def __init__(self, ws: web.WebSocketResponse, limit: proto.RateLimit):
        self.ws, self.limit = ws, limit
        self.replies: List[str] = []         # bounded by the rate limit
        self.latest: Dict[str, object] = {}  # kind -> newest payload (view bytes or JSON text)
        self.wake = asyncio.Event()

    def offer(self, kind: str, payload) -> None:
        self.latest[kind] = payload
        self.wake.set()

    def reply(self, message: dict) -> None:
        self.replies.append(json.dumps(message))
        self.wake.set()

    async def send_forever(self) -> None:
        """Send until the page goes away (a send to a closing connection ends it quietly)."""
        try:
            while not self.ws.closed:
                await self.wake.wait()
                self.wake.clear()
                while self.replies:
                    await self.ws.send_str(self.replies.pop(0))
                for kind in list(self.latest):
                    payload = self.latest.pop(kind)
                    if isinstance(payload, bytes):
                        await self.ws.send_bytes(payload)
                    else:
                        await self.ws.send_str(str(payload))
        except (ConnectionError, RuntimeError):
            pass                              # the page closed while a message was being sent


class UiServer:
    """The aiohttp application of one :class:`UiBridge`."""

    def __init__(self, bridge: UiBridge):
        self.bridge = bridge
        self.pages: List[Page] = []
        self._tasks: Set[asyncio.Task] = set()    # running background sends (kept referenced)
        self.app = web.Application(middlewares=[self._security_headers])
        self.app.add_routes([web.get('/', self._index), web.get('/static/{name}', self._asset),
                             web.get('/ws', self._websocket)])
        self._assets = {name: (resources.files(__package__) / 'static' / name).read_bytes() for name in ASSETS}

    @web.middleware
    async def _security_headers(self, request: web.Request, handler):
        response = await handler(request)
        response.headers['X-Content-Type-Options'] = 'nosniff'
        response.headers['Cache-Control'] = 'no-store'
        return response

    # ---------------------------------------------------------------- HTTP
    def _authorized(self, request: web.Request) -> bool:
        token = self.bridge.token
        return not token or hmac.compare_digest(request.query.get('token', ''), token)

    async def _index(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPForbidden(text='a valid ?token= is required')
        return web.Response(body=self._assets['index.html'], content_type='text/html')

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info['name']
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=self._assets[name], content_type=ASSETS[name])

    # ---------------------------------------------------------------- WebSocket
    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get('Origin')
        return origin is None or urlsplit(origin).netloc == request.host

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPForbidden(text='a valid ?token= is required')
        if not self._same_origin(request):
            raise web.HTTPForbidden(text='WebSocket from another origin')
        if len(self.pages) >= self.bridge.max_clients:
            raise web.HTTPServiceUnavailable(text=f'{self.bridge.max_clients} pages are connected already')
        ws = web.WebSocketResponse(max_msg_size=WS_FRAME_LIMIT, heartbeat=20.0)
        await ws.prepare(request)
        page = Page(ws, proto.RateLimit(self.bridge.request_rate, self.bridge.request_burst))
        self.pages.append(page)
        sender = asyncio.create_task(page.send_forever())
        page.offer('status', json.dumps(self.bridge.status()))
        self._background(self._send_objects([page]))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._request(page, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    page.reply({'type': 'error', 'id': None, 'message': 'binary requests are not accepted'})
        finally:
            self.pages.remove(page)
            sender.cancel()
        return ws

    async def _request(self, page: Page, raw: str) -> None:
        if not page.limit.allow():
            page.reply({'type': 'error', 'id': None, 'message': f'rate limit: more than '
                        f'{self.bridge.request_rate:g} requests per second (limits.request_rate)'})
            return
        try:
            request = proto.parse_request(raw, self.bridge.frame_size)
        except proto.RequestError as exc:
            page.reply({'type': 'error', 'id': None, 'message': str(exc)})
            return
        try:
            result = await self.bridge.execute(request.command)
        except NodeUnavailable as exc:
            page.reply({'type': 'error', 'id': request.id, 'request': request.type, 'message': str(exc)})
            return
        page.reply({'type': 'reply', 'id': request.id, 'request': request.type, **result})
        if not isinstance(request.command, (proto.SetMode, proto.SetVocabulary)):   # parameter events tell those
            await self._send_objects(self.pages)

    async def _send_objects(self, pages: List[Page]) -> None:
        try:
            listed = json.dumps(await self.bridge.prompted_objects())
        except NodeUnavailable:
            return                              # no node yet: the status readout says so
        for page in pages:
            page.offer('objects', listed)

    # ---------------------------------------------------------------- from the bridge
    def emit(self, kind: str, payload) -> None:
        """Called on the loop by the bridge: a view, a status or a parameter change."""
        if kind == 'view':
            assert isinstance(payload, View)
            message: object = view_message(payload, self.bridge.status())
            for page in self.pages:
                page.offer('view', message)
        elif kind == 'status':
            for page in self.pages:
                page.offer('status', json.dumps(payload))
        elif kind == 'parameters':
            self._background(self._send_objects(self.pages))

    def _background(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def status_forever(self) -> None:
        """Every second: the status, and the node's prompted objects (others may add or remove them)."""
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            self.emit('status', self.bridge.status())
            if self.pages:
                await self._send_objects(self.pages)


async def serve(bridge: UiBridge, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; logs the address (with the port bound when ``port`` is 0)."""
    server = UiServer(bridge)
    bridge.attach(asyncio.get_running_loop(), server.emit)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, bridge.host, bridge.port)
    await site.start()
    port = runner.addresses[0][1]
    bridge.get_logger().info(f'serving the teleop page on http://{bridge.host}:{port}/ for {bridge.seem}')
    status = asyncio.create_task(server.status_forever())
    try:
        await stop.wait()
    finally:
        status.cancel()
        await runner.cleanup()


def main(args: Optional[List[str]] = None) -> int:
    """Run ``seem_ui`` until SIGINT/SIGTERM; returns the exit status."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    bridge = None
    try:
        try:
            bridge = UiBridge()
        except ValueError as exc:
            rclpy.logging.get_logger('seem_ui').error(f'invalid parameter: {exc}')
            return EXIT_BAD_PARAMETERS
        if not is_loopback(bridge.host):
            if not bridge.token:
                bridge.get_logger().error(f'host {bridge.host} is not loopback: set the token parameter '
                                          '(pages then open http://HOST:PORT/?token=TOKEN)')
                return EXIT_BAD_PARAMETERS
            bridge.get_logger().warning(f'binding to {bridge.host}: pages on the network must present the token '
                                        '(?token=...)')
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(bridge)
        spinner = threading.Thread(target=executor.spin, name='seem-ui-ros', daemon=True)
        spinner.start()

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(bridge, stop)
        try:
            asyncio.run(run())
        except OSError as exc:              # the address is in use or cannot be bound
            bridge.get_logger().error(f'cannot serve on {bridge.host}:{bridge.port}: {exc}')
            return EXIT_BAD_PARAMETERS
        executor.shutdown()
    finally:
        if bridge is not None:
            bridge.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
