// The teleop page: live view of the seem node's masks and ids, prompts by mouse, pen, touch and text.
// Protocol: seem_ros/ui/protocol.py (requests) and seem_ros/ui/server.py (what the server sends).
import { colourOf, imageToPage, pageToImage, pageToImageClamped, paintRle } from './mapping.js';

const DRAG_PX = 5;          // pointer travel (page px) below which a press is a click
const MASK_ALPHA = 0.45;
const $ = (id) => document.getElementById(id);
const canvas = $('view'), ctx = canvas.getContext('2d');

const state = {
  view: null,               // {stamp, width, height, objects, bitmap}
  selected: 0,              // track id of the selected object (0: none)
  prompted: [],             // the node's prompted objects: {id, name, text}
  mode: '', vocabulary: [],
  replies: [],              // every reply and error, newest last (shown and kept for tests)
  gesture: null,            // the pointer gesture in progress
  decoding: 0,
};
let ws = null, nextId = 1;

// ------------------------------------------------------------------ connection
function connect() {
  const token = new URLSearchParams(location.search).get('token');
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`;
  ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => setConnection('connected', true);
  ws.onclose = () => { setConnection('disconnected: reconnecting…', false); setTimeout(connect, 1000); };
  ws.onmessage = (event) => (typeof event.data === 'string' ? onText(JSON.parse(event.data)) : onView(event.data));
}

function setConnection(text, ok) {
  $('connection').textContent = text;
  $('connection').className = ok ? 'ok' : 'bad';
}

function send(request) {
  if (!ws || ws.readyState !== WebSocket.OPEN) { say('not connected', true); return; }
  request.id = nextId++;
  ws.send(JSON.stringify(request));
}

function say(text, bad = false) {
  $('message').textContent = text;
  $('message').className = bad ? 'bad' : '';
}

// ------------------------------------------------------------------ from the server
async function onView(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const ticket = ++state.decoding;
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(buffer, 4 + length)], { type: 'image/jpeg' }));
  if (ticket !== state.decoding) { bitmap.close(); return; }     // a newer view arrived meanwhile
  if (state.view && state.view.bitmap) state.view.bitmap.close();
  // a frame without objects (no node output) keeps the last objects' list but draws none
  state.view = { ...header, bitmap, live: header.objects !== null, objects: header.objects || [] };
  draw();
  renderObjects();
}

function onText(message) {
  if (message.type === 'status') {
    const parts = [`${message.fps} fps`, message.latency_ms ? `latency ${message.latency_ms} ms` : '',
      message.backend || '', message.model || '', message.live ? '' : 'no objects from the node'];
    $('readout').textContent = parts.filter(Boolean).join(' · ');
    setConnection(message.node_ready ? `connected to ${message.node}` : `${message.node} is not available`,
      message.node_ready);
  } else if (message.type === 'objects') {
    state.prompted = message.objects;
    state.mode = message.mode;
    state.vocabulary = message.vocabulary;
    if (document.activeElement !== $('mode') && message.mode) $('mode').value = message.mode;
    if (document.activeElement !== $('vocabulary')) $('vocabulary').value = message.vocabulary.join(', ');
    renderObjects();
  } else if (message.type === 'reply' || message.type === 'error') {
    state.replies.push(message);
    const ok = message.type === 'reply' && message.ok;
    say(`${message.request || 'request'}: ${message.message}`, !ok);
    const created = (message.object_ids || []).filter((id) => id > 0);
    if (ok && ['click', 'box', 'scribble', 'text'].includes(message.request) && created.length) {
      state.selected = created[0];
      renderObjects();
    }
  }
}

// ------------------------------------------------------------------ drawing
function draw() {
  const view = state.view;
  if (!view) return;
  if (canvas.width !== view.width || canvas.height !== view.height) {
    canvas.width = view.width;
    canvas.height = view.height;
  }
  ctx.drawImage(view.bitmap, 0, 0);
  const masked = view.objects.filter((o) => o.mask);
  if (masked.length) {
    const image = ctx.getImageData(0, 0, view.width, view.height);
    for (const o of masked) paintRle(image.data, view.width, view.height, o.mask, colourOf(o.id), MASK_ALPHA);
    ctx.putImageData(image, 0, 0);
  }
  const line = Math.max(1.5, view.width / 400);
  ctx.font = `${Math.round(Math.max(12, view.width / 50))}px system-ui, sans-serif`;
  for (const o of view.objects) {
    const [x0, y0, x1, y1] = o.bbox;
    if (!(x1 > x0 && y1 > y0)) continue;
    const [r, g, b] = colourOf(o.id);
    ctx.strokeStyle = `rgb(${r},${g},${b})`;
    ctx.lineWidth = o.id === state.selected ? 3 * line : line;
    ctx.setLineDash(o.state === 'LOST' ? [4 * line, 3 * line] : []);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `${o.id} ${o.label}${o.state === 'LOST' ? ' (lost)' : ''}`;
    const width = ctx.measureText(text).width + 6, height = parseInt(ctx.font, 10) + 4;
    const top = y0 >= height ? y0 - height : y1;
    ctx.setLineDash([]);
    ctx.fillStyle = `rgba(${r},${g},${b},0.85)`;
    ctx.fillRect(x0, top, width, height);
    ctx.fillStyle = '#000';
    ctx.fillText(text, x0 + 3, top + height - 5);
  }
  drawGesture(line);
}

function drawGesture(line) {
  const g = state.gesture;
  if (!g || !g.dragging) return;
  ctx.setLineDash([3 * line, 2 * line]);
  ctx.lineWidth = line;
  ctx.strokeStyle = '#fff';
  if (g.kind === 'scribble') {
    ctx.beginPath();
    g.points.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
    ctx.stroke();
  } else {
    const p = g.points[g.points.length - 1];
    ctx.strokeRect(g.start.x, g.start.y, p.x - g.start.x, p.y - g.start.y);
  }
  ctx.setLineDash([]);
}

// ------------------------------------------------------------------ object list
// Rows are kept per id and updated in place, so that a row being clicked is never replaced.
const rowsById = new Map();

function listedObjects() {
  const rows = new Map();
  for (const p of state.prompted) rows.set(p.id, { id: p.id, label: p.name || p.text, state: 'waiting', prompted: true });
  for (const o of state.view ? state.view.objects : []) rows.set(o.id, { ...o, prompted: rows.has(o.id) || o.prompt_id > 0 });
  return [...rows.values()].sort((a, b) => a.id - b.id);
}

function makeRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.id = id;
  const [r, g, b] = colourOf(id);
  for (let i = 0; i < 6; i++) tr.append(document.createElement('td'));
  const swatch = document.createElement('span');
  swatch.className = 'swatch';
  swatch.style.background = `rgb(${r},${g},${b})`;
  tr.children[0].append(swatch, String(id));
  const remove = document.createElement('button');
  remove.textContent = 'remove';
  remove.className = 'remove';
  remove.onclick = (event) => { event.stopPropagation(); send({ type: 'remove', object_id: id }); };
  tr.children[5].append(remove);
  tr.onclick = () => { state.selected = id; renderObjects(); draw(); };
  return tr;
}

function renderObjects() {
  const body = $('objects').tBodies[0];
  const objects = listedObjects();
  const ids = new Set(objects.map((o) => o.id));
  for (const [id, tr] of rowsById) if (!ids.has(id)) { tr.remove(); rowsById.delete(id); }
  for (const o of objects) {
    let tr = rowsById.get(o.id);
    if (!tr) { tr = makeRow(o.id); rowsById.set(o.id, tr); }
    const cells = tr.children;
    // labels are client text: set as text, never parsed as HTML
    const texts = [o.label || '', o.state, o.score !== undefined ? o.score.toFixed(2) : '',
      o.position ? o.position.map((v) => v.toFixed(2)).join(', ') : ''];
    texts.forEach((text, i) => { if (cells[i + 1].textContent !== text) cells[i + 1].textContent = text; });
    cells[5].firstChild.hidden = !o.prompted;
    tr.className = o.id === state.selected ? 'selected' : '';
    body.append(tr);                       // in id order (moving a row keeps the element)
  }
}

// ------------------------------------------------------------------ prompts by pointer
function stampOf(view) { return { sec: view.stamp.sec, nanosec: view.stamp.nanosec }; }

canvas.addEventListener('contextmenu', (event) => event.preventDefault());
canvas.addEventListener('pointerdown', (event) => {
  const view = state.view;
  if (!view || (event.button !== 0 && event.button !== 2)) return;
  const rect = canvas.getBoundingClientRect();
  const start = pageToImage(event.clientX, event.clientY, rect, view.width, view.height);
  if (!start) return;                                   // on the letterbox bars
  canvas.setPointerCapture(event.pointerId);
  const tool = $('tool').value;
  state.gesture = {
    view, rect, start, points: [start], client: [event.clientX, event.clientY], dragging: false,
    negative: event.button === 2 || event.altKey || tool === 'negative',
    refine: event.ctrlKey || event.metaKey,
    kind: event.shiftKey || tool === 'scribble' ? 'scribble' : 'box',
  };
});
canvas.addEventListener('pointermove', (event) => {
  const g = state.gesture;
  if (!g) return;
  if (Math.hypot(event.clientX - g.client[0], event.clientY - g.client[1]) >= DRAG_PX) g.dragging = true;
  const p = pageToImageClamped(event.clientX, event.clientY, g.rect, g.view.width, g.view.height);
  const last = g.points[g.points.length - 1];
  if (Math.hypot(p.x - last.x, p.y - last.y) >= 1) g.points.push(p);
  if (g.dragging) draw();
});
canvas.addEventListener('pointerup', (event) => {
  const g = state.gesture;
  state.gesture = null;
  if (!g) return;
  const stamp = stampOf(g.view);
  if (!g.dragging) {
    const target = g.negative || g.refine ? state.selected : 0;
    if ((g.negative || g.refine) && !target) { say('select an object first (click it in the list)', true); return; }
    send({ type: 'click', stamp, x: g.start.x, y: g.start.y, positive: !g.negative, object_id: target });
  } else if (g.kind === 'scribble') {
    send({ type: 'scribble', stamp, points: g.points.map((p) => [Math.min(p.x, g.view.width - 0.5),
      Math.min(p.y, g.view.height - 0.5)]), object_id: g.refine ? state.selected : 0 });
  } else {
    const end = g.points[g.points.length - 1];
    send({ type: 'box', stamp, box: [Math.min(g.start.x, end.x), Math.min(g.start.y, end.y),
      Math.max(g.start.x, end.x), Math.max(g.start.y, end.y)] });
  }
  draw();
});
canvas.addEventListener('pointercancel', () => { state.gesture = null; draw(); });

// ------------------------------------------------------------------ forms and keys
$('text-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  if (!state.view) { say('no camera image yet', true); return; }
  send({ type: 'text', stamp: stampOf(state.view), text });
  $('text').value = '';
});
$('mode').addEventListener('change', () => send({ type: 'mode', mode: $('mode').value }));
$('vocabulary-form').addEventListener('submit', (event) => {
  event.preventDefault();
  send({ type: 'vocabulary', names: $('vocabulary').value });
});
$('rename-form').addEventListener('submit', (event) => {
  event.preventDefault();
  if (!state.selected) { say('select an object first', true); return; }
  send({ type: 'rename', object_id: state.selected, name: $('rename').value });
  $('rename').value = '';
});
$('reset').addEventListener('click', () => send({ type: 'reset' }));

document.addEventListener('keydown', (event) => {
  if (['INPUT', 'SELECT', 'TEXTAREA'].includes(event.target.tagName) || event.ctrlKey || event.metaKey) return;
  const tool = $('tool');
  const actions = {
    t: () => $('text').focus(),
    n: () => { tool.value = tool.value === 'negative' ? 'auto' : 'negative'; },
    s: () => { tool.value = tool.value === 'scribble' ? 'auto' : 'scribble'; },
    Escape: () => { state.selected = 0; renderObjects(); draw(); },
    Delete: () => state.selected && send({ type: 'remove', object_id: state.selected }),
    1: () => send({ type: 'mode', mode: 'prompted' }),
    2: () => send({ type: 'mode', mode: 'everything' }),
    3: () => send({ type: 'mode', mode: 'both' }),
  };
  actions.Backspace = actions.Delete;
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

// For tests and scripts: the state and the image -> page mapping of the canvas as shown.
window.seemUi = {
  state,
  imageToPage: (x, y) => imageToPage(x, y, canvas.getBoundingClientRect(), canvas.width, canvas.height),
  pageToImage: (x, y) => pageToImage(x, y, canvas.getBoundingClientRect(), canvas.width, canvas.height),
};
connect();
