"""The teleop page: ``seem_ui``, a ROS 2 node that serves a browser page over HTTP and WebSocket and
talks to a running ``seem`` node only through its public topics and services.

:mod:`.protocol` validates what browsers send (no ROS, no web server); :mod:`.bridge` is the ROS
side (subscriptions, service and parameter calls, frame pairing); :mod:`.server` the aiohttp
application and the ``seem_ui`` entry point; ``static/`` the page.
"""
