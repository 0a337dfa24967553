"""The teleop page in a real browser, as users run it: the seem node with the shipped model,
``seem-ros replay --live --loop`` playing a generated 640x480 bag into it, ``seem_ui`` beside it,
each in its own process over DDS, and headless Chromium driven by Selenium on a scaled,
letterboxed display (1440x900 window).

Every prompt is made with the mouse and keyboard on the page and checked where the node shows it:
the new id at the prompted pixel of ``~/label_image``, the object in ``~/list_objects``, the mode
in the node's parameters. Malformed and oversized requests go over a raw WebSocket and must be
refused with an error reply while the node keeps its objects and keeps serving.

Chromium: Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them when missing and
sets ``SEEM_ROS_REQUIRE_BROWSER``, so that CI fails instead of skipping without them. The final
screenshot is written to ``test-artifacts/teleop_page.png`` (``SEEM_ROS_ARTIFACTS`` overrides).
"""
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from seem_ros.scenes.bag import TOPICS, sidecar_paths, write_bag
from seem_ros.scenes.render import Trajectory, build_scene
from seem_ros.srv import ListObjects

from ros_helpers import ROOT, NodeProcess, call, ros_node, spin_until

CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get('SEEM_ROS_REQUIRE_BROWSER'):
        raise RuntimeError('chromium and chromedriver are required (apt-get install chromium chromium-driver)')
    pytest.skip('chromium / chromedriver not installed (Debian: apt-get install chromium chromium-driver)',
                allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only with a browser)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

W, H, FPS, FRAMES = 640, 480, 5.0, 10
TIMEOUT = 60.0
ARTIFACTS = Path(os.environ.get('SEEM_ROS_ARTIFACTS', ROOT / 'test-artifacts'))


@pytest.fixture(scope='module')
def scene_bag(tmp_path_factory):
    """A 640x480 bag of the demo scene's objects standing still (so that a pixel stays on its
    object for the whole test), without scripted prompts; the ground-truth id map of its frames."""
    scene = build_scene('demo', 0, width=W, height=H, fps=FPS, frames=FRAMES)
    still = tuple(replace(o, trajectory=Trajectory(o.trajectory.times[:1], o.trajectory.keys[:1]))
                  for o in scene.objects)
    scene = replace(scene, objects=still, prompt_plan=())
    path = tmp_path_factory.mktemp('ui') / 'still'
    write_bag(scene, path)
    ids = np.load(sidecar_paths(path)[0])['ids'][0]
    return path, ids, {o.id: o.sentence for o in scene.objects}


class Process:
    """A command in its own process, output in a log file."""

    def __init__(self, cmd, log_path):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, 'OMP_NUM_THREADS': '1'})

    def log(self):
        self._log.flush()
        return self.log_path.read_text()

    def wait_for_log(self, pattern, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            assert self.proc.poll() is None, f'{self.proc.args[:4]} exited:\n{self.log()}'
            time.sleep(0.1)
        raise AssertionError(f'no log line matching {pattern!r}:\n{self.log()}')

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()


def ui_command(ns, *params):
    return [sys.executable, '-m', 'seem_ros.ui.server', '--ros-args', '-r', f'__ns:={ns}',
            '-r', f'image:={ns}{TOPICS["image"]}', '-p', f'seem_node:={ns}/seem', '-p', 'qos.reliability:=reliable',
            *[a for p in params for a in ('-p', p)]]


@pytest.fixture(scope='module')
def stack(ros_namespace, scene_bag, tmp_path_factory):
    """Node (shipped model, depth on), live looping replay and seem_ui; yields the page's URL."""
    ns, logs = ros_namespace, tmp_path_factory.mktemp('logs')
    topics = {key: f'{ns}{topic}' for key, topic in TOPICS.items()}
    node = NodeProcess(ns, logs / 'node.log', ros_args=[
        '-r', f'image:={topics["image"]}', '-r', f'depth:={topics["depth"]}',
        '-r', f'depth/camera_info:={topics["depth_info"]}', '-p', 'qos.reliability:=reliable',
        '-p', 'depth.enabled:=true'])
    ui = Process(ui_command(ns, 'port:=0'), logs / 'ui.log')
    remaps = [a for key in ('image', 'camera_info', 'depth', 'depth_info')
              for a in ('--remap', f'{TOPICS[key]}:={topics[key]}')]
    player = Process([sys.executable, '-m', 'seem_ros.cli.main', 'replay', str(scene_bag[0]), '--live', '--loop',
                      '--node-namespace', ns, '--ignore-bag-prompts', '--no-clock', *remaps], logs / 'replay.log')
    try:
        port = int(ui.wait_for_log(r'serving the teleop page on http://127\.0\.0\.1:(\d+)/').group(1))
        yield f'http://127.0.0.1:{port}/', port
    finally:
        for process in (player, ui):
            process.stop()
        node.interrupt()


@pytest.fixture(scope='module')
def ros(ros_namespace, stack):
    """A test node keeping the newest ``~/label_image``."""
    with ros_node('ui_test', ros_namespace) as node:
        latest = {}
        node.create_subscription(Image, f'{ros_namespace}/seem/label_image', lambda m: latest.update(image=m),
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        node.latest = latest
        yield node


@pytest.fixture(scope='module')
def browser(stack):
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--window-size=1440,900'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(stack[0])
        wait_js(driver, 'return !!(window.seemUi && seemUi.state.view && seemUi.state.view.live)',
                'a camera frame with the node\'s objects on the page')
        yield driver
    finally:
        driver.quit()


def wait_js(driver, script, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        assert time.monotonic() < deadline, f'timed out after {timeout} s waiting for {what}'
        time.sleep(0.1)


def label_at(ros, x, y):
    image = ros.latest['image']
    labels = np.frombuffer(bytes(image.data), np.uint16).reshape(image.height, image.width)
    return int(labels[int(y), int(x)])


def wait_label(ros, x, y, expected, what):
    """Until the newest label image has ``expected`` at (x, y) (ids of a static scene keep their pixels)."""
    spin_until(ros, lambda: 'image' in ros.latest and label_at(ros, x, y) == expected, TIMEOUT, what)


class Page:
    """The page in the browser: mouse gestures at image pixels, replies."""

    def __init__(self, driver):
        self.driver = driver
        self.canvas = driver.find_element(By.ID, 'view')

    def offset(self, x, y):
        """Selenium's offset from the canvas centre of image pixel (x, y)."""
        p = self.driver.execute_script(f'return seemUi.imageToPage({x}, {y})')
        r = self.driver.execute_script('const r = arguments[0].getBoundingClientRect(); '
                                       'return [r.left + r.width / 2, r.top + r.height / 2]', self.canvas)
        return round(p['x'] - r[0]), round(p['y'] - r[1])

    def at(self, x, y):
        return ActionChains(self.driver).move_to_element_with_offset(self.canvas, *self.offset(x, y))

    def drag(self, path, shift=False):
        chain = ActionChains(self.driver)
        if shift:
            chain.key_down(Keys.SHIFT)
        chain.move_to_element_with_offset(self.canvas, *self.offset(*path[0])).click_and_hold()
        for x, y in path[1:]:
            chain.move_to_element_with_offset(self.canvas, *self.offset(x, y))
        chain.release()
        if shift:
            chain.key_up(Keys.SHIFT)
        chain.perform()

    def reply(self, count_before, request):
        """The reply after the first ``count_before`` replies; it must be a success of ``request``."""
        replies = wait_js(self.driver, f'const r = seemUi.state.replies; return r.length > {count_before} && r',
                          f'a reply to {request}')
        reply = replies[count_before]
        assert reply['type'] == 'reply' and reply['ok'] and reply['request'] == request, reply
        return reply

    def replies(self):
        return self.driver.execute_script('return seemUi.state.replies.length')

    def row(self, object_id, text):
        """Until the list's row of ``object_id`` shows ``text``."""
        return wait_js(self.driver, f'const r = document.querySelector(\'#objects tr[data-id="{object_id}"]\'); '
                                    f'return r && r.innerText.includes({json.dumps(text)}) && r.innerText',
                       f'object {object_id} in the list with {text!r}')


def centre(ids, object_id):
    rows, cols = np.nonzero(ids == object_id)
    inside = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)   # a pixel of the object
    return float(cols[inside]) + 0.5, float(rows[inside]) + 0.5


def bbox(ids, object_id, margin=6):
    rows, cols = np.nonzero(ids == object_id)
    return (max(cols.min() - margin, 0), max(rows.min() - margin, 0),
            min(cols.max() + 1 + margin, W - 1), min(rows.max() + 1 + margin, H - 1))


def test_teleop_page_prompts_and_manages_objects(browser, ros, ros_namespace, scene_bag):
    _, ids, sentences = scene_bag
    page = Page(browser)
    assert browser.execute_script('return [seemUi.state.view.width, seemUi.state.view.height]') == [W, H]
    shown = browser.execute_script('const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]',
                                   page.canvas)
    assert shown[0] / W != 1 and abs(shown[0] / W - shown[1] / H) > 0.05   # scaled and letterboxed

    # a click on the red rectangle: a new object at the clicked pixel
    x, y = centre(ids, 2)
    n = page.replies()
    page.at(x, y).click().perform()
    clicked = page.reply(n, 'click')['object_ids'][0]
    page.row(clicked, 'click')
    wait_label(ros, x, y, clicked, f'object {clicked} at the clicked pixel ({x}, {y}) of ~/label_image')

    # a box dragged around the cyan ellipse, then a negative click beside it refines that object
    x0, y0, x1, y1 = bbox(ids, 3)
    n = page.replies()
    page.drag([(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)])
    boxed = page.reply(n, 'box')['object_ids'][0]
    wait_label(ros, *centre(ids, 3), boxed, f'the boxed object {boxed} on the ellipse')
    n = page.replies()
    page.at(min(x1 + 15, W - 1), (y0 + y1) / 2).context_click().perform()
    assert page.reply(n, 'click')['object_ids'] == [boxed]
    listed = call(ros, ros.create_client(ListObjects, f'{ros_namespace}/seem/list_objects'), ListObjects.Request())
    assert sorted(p.object_id for p in listed.objects) == sorted([clicked, boxed])     # refined, not added
    wait_label(ros, *centre(ids, 3), boxed, 'the ellipse still the boxed object after the negative click')

    # a shift-drag scribble across the hexagon
    hx, hy = centre(ids, 1)
    n = page.replies()
    page.drag([(hx - 30, hy), (hx - 10, hy + 5), (hx + 10, hy - 5), (hx + 30, hy)], shift=True)
    scribbled = page.reply(n, 'scribble')['object_ids'][0]
    wait_label(ros, hx, hy, scribbled, f'the scribbled object {scribbled} on the hexagon')

    # a typed command
    n = page.replies()
    field = browser.find_element(By.ID, 'text')
    field.send_keys(sentences[4], Keys.ENTER)
    texted = page.reply(n, 'text')['object_ids'][0]
    page.row(texted, sentences[4])

    # rename the clicked object from its row, then remove the boxed one
    browser.find_element(By.CSS_SELECTOR, f'#objects tr[data-id="{clicked}"]').click()
    n = page.replies()
    browser.find_element(By.ID, 'rename').send_keys('red box', Keys.ENTER)
    page.reply(n, 'rename')
    page.row(clicked, 'red box')
    n = page.replies()
    browser.find_element(By.CSS_SELECTOR, f'#objects tr[data-id="{boxed}"] button.remove').click()
    page.reply(n, 'remove')
    wait_js(browser, f'return !document.querySelector(\'#objects tr[data-id="{boxed}"]\')', 'the removed row gone')
    listed = call(ros, ros.create_client(ListObjects, f'{ros_namespace}/seem/list_objects'), ListObjects.Request())
    assert sorted(p.object_id for p in listed.objects) == sorted([clicked, scribbled, texted])
    assert {p.object_id: p.object_name for p in listed.objects}[clicked] == 'red box'
    cx, cy = centre(ids, 3)
    wait_label(ros, cx, cy, 0, 'the removed object gone from ~/label_image')
    wait_label(ros, x, y, clicked, 'the renamed object still tracked')

    # the mode switch sets the node's parameter
    n = page.replies()
    Select(browser.find_element(By.ID, 'mode')).select_by_value('both')
    page.reply(n, 'mode')
    mode = call(ros, ros.create_client(GetParameters, f'{ros_namespace}/seem/get_parameters'),
                GetParameters.Request(names=['pipeline.mode'])).values[0].string_value
    assert mode == 'both'
    wait_js(browser, 'return document.getElementById("objects").innerText.includes("3D") && '
                     'seemUi.state.view.objects.some((o) => o.position)', 'a 3D position in the list')

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / 'teleop_page.png'))


def test_image_to_page_mapping_in_the_browser(browser):
    """mapping.js on a scaled and a letterboxed display, checked against the arithmetic here."""
    result = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/static/mapping.js').then((m) => {
          const wide = { left: 10, top: 20, width: 1000, height: 480 };    // bars left and right
          const tall = { left: 0, top: 0, width: 320, height: 900 };       // bars above and below
          const pixels = new Uint8ClampedArray(4 * 3 * 2);
          m.paintRle(pixels, 3, 2, { x: 1, y: 0, w: 2, h: 2, rle: [1, 2, 1] }, [255, 0, 0], 1);
          done({
            wide: m.fitRect(1000, 480, 640, 480), tall: m.fitRect(320, 900, 640, 480),
            in: m.pageToImage(10 + 180 + 320, 20 + 240, wide, 640, 480),
            bar: m.pageToImage(10 + 100, 20 + 240, wide, 640, 480),
            back: m.imageToPage(320, 240, tall, 640, 480),
            clamped: m.pageToImageClamped(-50, 2000, tall, 640, 480),
            red: Array.from({ length: 6 }, (_, i) => pixels[4 * i]),
          });
        });""")
    assert result['wide'] == {'scale': 1.0, 'x': 180.0, 'y': 0.0}
    assert result['tall'] == pytest.approx({'scale': 0.5, 'x': 0.0, 'y': 330.0})
    assert result['in'] == {'x': 320.0, 'y': 240.0}
    assert result['bar'] is None
    assert result['back'] == pytest.approx({'x': 160.0, 'y': 450.0})
    assert result['clamped'] == {'x': 0, 'y': 480}
    # crop at column 1, 2x2, column-major runs bg 1, fg 2, bg 1: (col 1, row 1) and (col 2, row 0)
    assert result['red'] == [0, 0, 255, 0, 255, 0]


async def _exchange(url, messages, origin=None):
    """Send ``messages`` on a new WebSocket; returns the first view header and the replies."""
    headers = {'Origin': origin} if origin else {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers=headers) as ws:
            header = None
            while header is None:
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    length = int.from_bytes(msg.data[:4], 'little')
                    header = json.loads(msg.data[4:4 + length])
            replies = []
            for make in messages:
                message = make(header)
                await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
                while True:
                    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                    if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)['type'] in ('error', 'reply'):
                        replies.append(json.loads(msg.data))
                        break
            return header, replies


def test_malformed_and_oversized_requests_are_refused(stack, ros, ros_namespace):
    url, port = stack
    ws_url = f'ws://127.0.0.1:{port}/ws'
    list_client = ros.create_client(ListObjects, f'{ros_namespace}/seem/list_objects')
    before = sorted(p.object_id for p in call(ros, list_client, ListObjects.Request()).objects)

    def click(header, **fields):
        return json.dumps({'type': 'click', 'stamp': header['stamp'], 'x': 5, 'y': 5, 'positive': True,
                           'object_id': 0, **fields})
    cases = [
        (lambda h: 'not json', 'not JSON'),
        (lambda h: '[1, 2]', 'must be a JSON object'),
        (lambda h: json.dumps({'type': 'explode'}), "type: 'explode' is not one of"),
        (lambda h: click(h, x=10_000), 'outside the 640x480 frame'),
        (lambda h: click(h, y=float('nan')).replace('NaN', '"nan"'), 'finite number'),
        (lambda h: click(h, positive=False), 'object_id must name an object'),
        (lambda h: click(h, stamp={'sec': 1, 'nanosec': 2}), 'is not a frame this page was sent'),
        (lambda h: click(h, colour='red'), 'unknown field(s) colour'),
        (lambda h: json.dumps({'type': 'text', 'stamp': h['stamp'], 'text': 'a' * 600}), 'exceeds 512'),
        (lambda h: json.dumps({'type': 'text', 'stamp': h['stamp'], 'text': 'x' * 100_000}), 'exceeds 65536'),
        (lambda h: json.dumps({'type': 'scribble', 'stamp': h['stamp'], 'points': [[1, 1]] * 4097,
                               'object_id': 0}), '1 to 4096'),
        (lambda h: json.dumps({'type': 'box', 'stamp': h['stamp'], 'box': [50, 50, 40, 60]}), 'non-empty box'),
        (lambda h: json.dumps({'type': 'mode', 'mode': 'rm -rf'}), 'mode must be one of'),
        (lambda h: json.dumps({'type': 'remove', 'object_id': 65000}), 'no object with id 65000'),
        (lambda h: b'\x00\x01', 'binary requests are not accepted'),
    ]
    header, replies = asyncio.run(_exchange(ws_url, [make for make, _ in cases]))
    assert (header['width'], header['height']) == (W, H)
    for (_, expected), reply in zip(cases, replies):
        assert expected in reply['message'], (expected, reply)
        assert reply['type'] == 'error' or not reply['ok'], reply
    # a burst over the rate limit is refused too (limits.request_rate 20/s, bursts of 40)
    _, burst = asyncio.run(_exchange(ws_url, [lambda h: 'x'] * 60))
    assert any('rate limit' in r['message'] for r in burst)

    # the node is unaffected: same objects, still serving frames
    assert sorted(p.object_id for p in call(ros, list_client, ListObjects.Request()).objects) == before
    later, _ = asyncio.run(_exchange(ws_url, []))
    assert (later['stamp']['sec'], later['stamp']['nanosec']) > (header['stamp']['sec'], header['stamp']['nanosec'])

    async def http(path, **kwargs):
        async with aiohttp.ClientSession() as session:
            async with session.get(f'http://127.0.0.1:{port}{path}', **kwargs) as response:
                return response.status
    assert asyncio.run(http('/static/server.py')) == 404
    assert asyncio.run(http('/static/..%2fserver.py')) == 404
    assert asyncio.run(http('/ws', headers={'Origin': 'http://evil.example', 'Upgrade': 'websocket',
                                            'Connection': 'Upgrade', 'Sec-WebSocket-Version': '13',
                                            'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ=='})) == 403


def test_binding_beyond_loopback_needs_a_token(ros_namespace, tmp_path):
    refused = subprocess.run(ui_command(ros_namespace, 'host:=0.0.0.0', 'port:=0'), cwd=ROOT, capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert refused.returncode == 2 and 'set the token parameter' in refused.stderr
    ui = Process(ui_command(ros_namespace, 'host:=0.0.0.0', 'port:=0', 'token:=s3cret'), tmp_path / 'ui.log')
    try:
        port = int(ui.wait_for_log(r'serving the teleop page on http://0\.0\.0\.0:(\d+)/').group(1))
        assert 'pages on the network must present the token' in ui.log()

        async def status(path):
            async with aiohttp.ClientSession() as session:
                async with session.get(f'http://127.0.0.1:{port}{path}') as response:
                    return response.status
        assert asyncio.run(status('/')) == 403
        assert asyncio.run(status('/?token=wrong')) == 403
        assert asyncio.run(status('/?token=s3cret')) == 200
    finally:
        ui.stop()
