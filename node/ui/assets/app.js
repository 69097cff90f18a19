// sealpost web app: a client of the daemon's local API (/v1/..., described
// by /openapi.json) and its event stream (/v1/events), served by the daemon
// itself. Plain JavaScript, no build step, no dependencies.
//
// Text is text: everything that comes from the network or the user is put
// in the page with textContent or as a text node, never parsed as HTML (and
// the Content-Security-Policy's Trusted Types make the browser refuse any
// attempt). Links in messages are shown, not fetched.
//
// Conversations have a kind (the API's Conversation.kind): "contact" or
// "group"; `kinds` below says how to load, page and send in each.
// Everything else (list, paging, live updates, states, message bodies:
// texts and files) is shared.

const PAGE = 50; // messages a page of a conversation
const STATUS_EVERY = 15000; // ms between status refreshes

// ---- small helpers ------------------------------------------------------

const $ = (id) => document.getElementById(id);

// h builds an element. Children that are strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c != null && c !== false) el.append(c);
  }
  return el;
}

// controlKey names a link or button by where it goes or what it is called.
const controlKey = (el) => `${el.tagName} ${el.getAttribute('href') ?? ''} ${el.getAttribute('aria-label') ?? el.textContent}`;

// replaceItems replaces a list's items with new ones. When the focus was on
// a link or button in the list, it moves to the one with the same key among
// the new items: a refresh while a person tabs through the list (a message
// arrives, a relay's state changes) does not throw their focus out.
function replaceItems(list, items) {
  const focused = document.activeElement;
  const key = focused && focused !== list && list.contains(focused) ? controlKey(focused) : null;
  list.replaceChildren(...items);
  if (key === null) return;
  for (const el of list.querySelectorAll('a, button')) {
    if (controlKey(el) === key) {
      el.focus();
      return;
    }
  }
}

class APIError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// api calls the daemon; it returns the Response, or throws an APIError
// with the daemon's code and message.
async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opt);
  } catch (e) {
    throw new APIError('unavailable', 'the daemon does not answer; is it running?', 0);
  }
  if (r.status === 401) {
    showLogin();
    throw new APIError('unauthorized', 'not logged in', 401);
  }
  if (!r.ok) {
    let e = null;
    try { e = (await r.json()).error; } catch { /* not JSON */ }
    throw new APIError(e?.code || 'internal', e?.message || r.statusText, r.status);
  }
  return r;
}

const getJSON = async (path) => (await api('GET', path)).json();
const postJSON = async (path, body) => (await api('POST', path, body === undefined ? {} : body)).json();

// contactPath is a contact's route: its user ID as one path segment.
const contactPath = (id, rest = '') =>
  '/v1/contacts/' + encodeURIComponent(id).replace(/\./g, '%2E') + rest;

// ndjson reads a response of one JSON object a line.
async function ndjson(r) {
  const text = await r.text();
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

let toastTimer = 0;
function toast(msg) {
  const t = $('toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

// fail shows an error where it belongs: in el (a dialog's error line) or
// as a toast. A lost session shows the login page instead.
function fail(err, el) {
  if (err instanceof APIError && err.code === 'unauthorized') return;
  const msg = err instanceof APIError ? err.message : String(err);
  if (el) {
    el.textContent = msg;
    el.hidden = false;
  } else {
    toast(msg);
  }
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
function when(iso) {
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
}

// Outgoing states in the order they are reached; failed is shown until a
// later state replaces it.
const stateRank = { queued: 0, failed: 0, sent: 1, delivered: 2, read: 3 };
const later = (a, b) => ((stateRank[b] ?? -1) > (stateRank[a] ?? -1) ? b : a);

// ---- state --------------------------------------------------------------

const app = {
  me: null, // /v1/id
  convs: [], // /v1/conversations, newest first
  cur: null, // the open conversation
  states: new Map(), // message ID -> newest state seen in an event
  events: null,
};

// kinds are the conversation kinds the app knows.
const kinds = {
  contact: {
    route: (id) => '#/c/' + encodeURIComponent(id),
    load: (id) => getJSON(contactPath(id)),
    // The page is shown first; markRead follows (it writes every unread
    // message, which takes a while in a long conversation).
    messages: (id, before) =>
      api('GET', contactPath(id, `/messages?limit=${PAGE}&mark_read=false` + (before ? `&before=${before}` : ''))).then(ndjson),
    send: (id, text) => postJSON('/v1/messages', { to: id, text }),
    markRead: (id) => postJSON(contactPath(id, '/read')),
    // files is where a file's content is posted (q: its name and type).
    files: (id, q) => { q.set('to', id); return '/v1/files?' + q; },
  },
  group: {
    route: (id) => '#/g/' + encodeURIComponent(id),
    load: (id) => getJSON(groupPath(id)),
    messages: (id, before) =>
      getJSON(groupPath(id, `/messages?limit=${PAGE}&mark_read=false` + (before ? `&before=${before}` : ''))).then((r) => r.messages),
    send: (id, text) => postJSON(groupPath(id, '/messages'), { text }),
    // Read here only: groups send no read receipts.
    markRead: (id) => postJSON(groupPath(id, '/read')),
    files: (id, q) => groupPath(id, '/files?') + q,
  },
};

const groupPath = (id, rest = '') => '/v1/groups/' + encodeURIComponent(id) + rest;
const filePath = (id, rest = '') => '/v1/files/' + encodeURIComponent(id) + rest;

// ---- login and start ----------------------------------------------------

function showLogin() {
  if (app.events) {
    app.events.close();
    app.events = null;
  }
  $('app').hidden = true;
  $('login').hidden = false;
  document.title = 'sealpost';
  document.body.dataset.ready = 'login';
}

async function start() {
  performance.mark('app-start');
  wire();
  try {
    app.me = await getJSON('/v1/id');
  } catch (e) {
    if (!(e instanceof APIError && e.code === 'unauthorized')) {
      showLogin();
      $('login').querySelector('p').textContent = e.message;
    }
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = app.me.name || '';
  connectEvents();
  refreshStatus(); // the status line fills in when it comes; nothing waits for it
  await refreshConversations();
  await route();
  setInterval(refreshStatus, STATUS_EVERY);
  performance.mark('interactive');
  document.body.dataset.ready = 'true';
}

// ---- conversation list --------------------------------------------------

let refreshing = null;
let refreshAgain = false;

// refreshConversations reloads the list; calls while one runs coalesce
// into one more.
async function refreshConversations() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      try {
        app.convs = (await getJSON('/v1/conversations')).conversations;
        renderConversations();
      } catch (e) {
        fail(e);
      }
    } while (refreshAgain);
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

function renderConversations() {
  const list = $('conv-list');
  const items = [];
  let unread = 0;
  for (const c of app.convs) {
    const kind = kinds[c.kind];
    if (!kind) continue;
    unread += c.unread;
    const descID = 'conv-desc-' + c.id;
    const parts = [];
    if (c.contact?.state === 'request') parts.push('Message request');
    if (c.contact?.identity_changed) parts.push('Safety number changed');
    if (c.group?.state === 'request') parts.push('Group invitation');
    if (c.group && c.group.state !== 'active' && c.group.state !== 'request') parts.push(c.group.state === 'left' ? 'You left' : c.group.state);
    if (c.last) {
      const who = c.last.outgoing ? 'You: ' : c.kind === 'group' ? (c.last.from_name || 'someone') + ': ' : '';
      parts.push(who + (c.last.text || (c.last.file ? c.last.file.name || 'a file' : '')));
    }
    const current = app.cur?.id === c.id;
    items.push(h('li', { class: 'conv' + (c.unread ? ' unread' : '') + (current ? ' current' : '') },
      h('a', { href: kind.route(c.id), 'aria-describedby': descID, 'aria-current': current ? 'page' : null, text: c.name }),
      h('span', { class: 'conv-desc', id: descID },
        c.unread ? h('span', { class: 'badge' }, h('span', { class: 'visually-hidden', text: 'Unread: ' }), String(c.unread)) : null,
        h('span', { class: 'preview', text: parts.join(' · ') })),
      c.last ? h('time', { class: 'conv-time', datetime: c.last.received_at, text: when(c.last.received_at) }) : null));
  }
  replaceItems(list, items);
  $('conv-empty').hidden = items.length > 0;
  document.title = unread ? `(${unread}) sealpost` : 'sealpost';
}

// ---- status -------------------------------------------------------------

async function refreshStatus() {
  try {
    const st = await getJSON('/v1/status');
    app.status = st;
    const parts = [st.peers === 1 ? '1 peer' : `${st.peers} peers`];
    if (st.relays) parts.push(`relays ${st.relays_subscribed}/${st.relays}`);
    if (st.outbox) parts.push(`${st.outbox} waiting to send`);
    const s = $('status');
    s.textContent = parts.join(' · ');
    s.dataset.online = st.peers > 0 ? 'true' : 'false';
  } catch (e) {
    if (!(e instanceof APIError && e.code === 'unauthorized')) {
      $('status').textContent = 'daemon not answering';
      $('status').dataset.online = 'false';
    }
  }
}

// ---- routing ------------------------------------------------------------

async function route() {
  const m = location.hash.match(/^#\/([a-z])\/(.+)$/);
  const kind = m && Object.entries(kinds).find(([, k]) => k.route('x').startsWith(`#/${m[1]}/`));
  if (!kind) {
    closeConversation();
    return;
  }
  await openConversation(kind[0], decodeURIComponent(m[2]));
}

function closeConversation() {
  app.cur = null;
  document.body.classList.remove('conv-open');
  $('conv-view').hidden = true;
  $('welcome').hidden = false;
  renderConversations();
}

// ---- one conversation ---------------------------------------------------

let openSeq = 0;

async function openConversation(kind, id) {
  const seq = ++openSeq;
  performance.clearMarks('open-start');
  performance.mark('open-start');
  const cur = { kind, id, k: kinds[kind], info: null, msgs: new Map(), oldest: 0, atStart: false, loadingOlder: false };
  app.cur = cur;
  document.body.classList.add('conv-open');
  $('welcome').hidden = true;
  $('conv-view').hidden = false;
  const summary = app.convs.find((c) => c.id === id);
  $('conv-name').textContent = summary?.name || '';
  $('conv-sub').textContent = '';
  $('msg-list').replaceChildren();
  $('older').hidden = true;
  let info, page;
  try {
    [info, page] = await Promise.all([cur.k.load(id), cur.k.messages(id, 0)]);
  } catch (e) {
    if (seq === openSeq) fail(e);
    return;
  }
  if (seq !== openSeq) return; // another conversation was opened meanwhile
  cur.info = info;
  renderHeader();
  cur.atStart = page.length < PAGE;
  appendMessages(page, 'end');
  $('older').hidden = cur.atStart;
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
  requestAnimationFrame(() => {
    if (seq !== openSeq) return;
    performance.clearMarks('open-end');
    performance.mark('open-end');
    performance.clearMeasures('open-conversation');
    performance.measure('open-conversation', 'open-start', 'open-end');
    document.body.dataset.conversation = id;
  });
  renderConversations();
  if (summary?.unread || page.some((m) => !m.outgoing && m.state === 'received')) markReadIfSeen();
  if (!window.matchMedia('(max-width: 700px)').matches && !$('msg-input').disabled) $('msg-input').focus();
}

// renderHeader shows the contact's name and trust, the key-change warning
// (which blocks sending) and the message-request bar.
function renderHeader() {
  const isGroup = app.cur.kind === 'group';
  $('verify').hidden = isGroup;
  $('remove').hidden = isGroup;
  $('members').hidden = !isGroup;
  $('decline').hidden = !isGroup;
  $('attach').hidden = !app.cur.k.files;
  if (isGroup) {
    renderGroupHeader();
    return;
  }
  $('group-note').hidden = true;
  const c = app.cur.info;
  $('conv-name').textContent = c.name;
  const sub = [];
  if (c.display_name && c.display_name !== c.name) sub.push(`calls themself ${c.display_name}`);
  sub.push(c.verified ? 'verified' : 'not verified');
  $('conv-sub').textContent = sub.join(' · ');
  const warn = $('identity-warning');
  if (c.identity_changed) {
    warn.textContent = `The safety number with ${c.name} changed. They may have reinstalled sealpost, or someone may be pretending to be them. ` +
      'Sending is paused until you compare the new safety number with them and verify it.';
    warn.hidden = false;
  } else {
    warn.hidden = true;
  }
  const request = c.state === 'request';
  $('request-bar').hidden = !request;
  $('request-text').textContent = request
    ? `${c.name} is not in your contacts yet. Accept to reply, or remove the request.`
    : '';
  $('composer').hidden = request;
  const blocked = !!c.identity_changed;
  $('msg-input').disabled = blocked;
  $('send').disabled = blocked;
  $('msg-input').placeholder = blocked ? 'Verify the new safety number to send' : 'Message';
  $('attach').disabled = blocked;
}

// nameOf is a contact's name by user ID, from the conversation list.
function nameOf(userID) {
  return app.convs.find((c) => c.kind === 'contact' && c.id === userID)?.name;
}

// renderGroupHeader shows a group's name and members, its state (an
// invitation to accept or decline, joining, left) and a member's key
// change, which blocks sending.
function renderGroupHeader() {
  const g = app.cur.info;
  $('conv-name').textContent = g.name;
  const n = g.members?.length || g.members_count || 0;
  $('conv-sub').textContent = g.state === 'request' ? 'invitation' : `${n} ${n === 1 ? 'member' : 'members'}` + (g.admin ? ' · you are an admin' : '');
  const changed = (g.members || []).filter((m) => m.identity_changed).map((m) => m.name || m.user_id);
  const warn = $('identity-warning');
  warn.hidden = changed.length === 0;
  warn.textContent = changed.length
    ? `The safety number of ${changed.join(', ')} changed. Sending to the group is paused until you verify it in your conversation with them.`
    : '';
  const request = g.state === 'request';
  $('request-bar').hidden = !request;
  $('request-text').textContent = request
    ? `${nameOf(g.inviter) || g.inviter || 'Someone'} invited you to the group ${g.name}. Accept to join it, or decline.`
    : '';
  const notes = { joining: 'Joining the group: the other members add you.', leaving: 'Leaving the group.', left: 'You are no longer in this group' + (g.reason ? ` (${g.reason}).` : '.') };
  const note = g.error ? `This group cannot go on: ${g.error}` : notes[g.state];
  $('group-note').hidden = !note;
  $('group-note').textContent = note || '';
  $('composer').hidden = g.state !== 'active';
  $('members').hidden = request;
  const blocked = changed.length > 0;
  $('msg-input').disabled = blocked;
  $('send').disabled = blocked;
  $('msg-input').placeholder = blocked ? 'Verify the changed safety numbers to send' : `Message ${g.name}`;
  $('attach').disabled = blocked;
}

// appendMessages puts messages (oldest first) at the start or the end of
// the list, skipping those shown already.
function appendMessages(msgs, where) {
  const cur = app.cur;
  const els = [];
  for (const m of msgs) {
    if (cur.msgs.has(m.id)) continue;
    const el = renderMessage(m);
    cur.msgs.set(m.id, { m, el });
    if (!cur.oldest || m.cursor < cur.oldest) cur.oldest = m.cursor;
    if (m.gap) {
      els.push(h('li', { class: 'gap', text: m.gap === 1 ? '1 message missing here' : `${m.gap} messages missing here` }));
    }
    els.push(el);
  }
  if (where === 'start') $('msg-list').prepend(...els);
  else $('msg-list').append(...els);
}

function renderMessage(m) {
  const state = m.outgoing ? later(m.state, app.states.get(m.id)) : null;
  return h('li', { class: 'msg ' + (m.outgoing ? 'out' : 'in'), 'data-id': m.id },
    m.group_id && !m.outgoing ? h('p', { class: 'from', text: m.from_name || m.from.slice(0, 16) }) : null,
    renderBody(m),
    h('p', { class: 'meta' },
      h('time', { datetime: m.received_at, title: 'sent ' + dateFmt.format(new Date(m.sent_at)), text: when(m.received_at) }),
      state ? ' ' : null,
      state ? renderState(state, m.reason) : null));
}

// renderBody is the message's content: text, as text, or a file with its
// caption.
function renderBody(m) {
  if (m.file) return renderFile(m);
  return h('p', { class: 'text', text: m.text });
}

// Pictures the daemon serves as themselves (?inline=1); any other file is
// only saved.
const pictures = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

function sizeText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// renderFile shows a file: the picture itself once it is here (the
// daemon's content route, same origin, under the page's CSP), its name
// and size as text, Save, or Download for one that waits to be asked for,
// and the progress of a transfer.
function renderFile(m) {
  const f = m.file;
  const name = f.name || 'file';
  const here = m.outgoing || f.state === 'saved';
  const box = h('div', { class: 'file' });
  if (here && pictures.has(f.mime)) {
    box.append(h('img', { class: 'picture', src: filePath(f.id, '/content?inline=1'), alt: name }));
  }
  box.append(h('p', { class: 'file-name' }, h('span', { class: 'name', text: name }), ' ', h('span', { class: 'note', text: sizeText(f.size) })));
  if (here) {
    box.append(h('a', { href: filePath(f.id, '/content'), download: name, 'aria-label': `Save ${name}`, text: 'Save' }));
  } else if (f.state !== 'downloading') {
    box.append(h('button', { type: 'button', 'aria-label': `Download ${name}`, text: 'Download', onclick: () => downloadFile(f.id) }));
  }
  if (f.state === 'failed' && !m.outgoing) box.append(h('p', { class: 'error', text: 'The download failed; it is retried.' }));
  if (m.text) box.append(h('p', { class: 'text', text: m.text }));
  return box;
}

// showProgress shows bytes of total moved for message id's file.
function showProgress(id, bytes, total, direction) {
  const shown = app.cur?.msgs.get(id);
  if (!shown || !shown.m.file) return;
  let p = shown.el.querySelector('progress');
  if (bytes >= total) {
    p?.remove();
    return;
  }
  if (!p) {
    const name = shown.m.file.name || 'file';
    p = h('progress', { 'aria-label': (direction === 'down' ? 'Downloading ' : 'Sending ') + name });
    shown.el.querySelector('.file').append(p);
  }
  p.max = total;
  p.value = bytes;
}

// fileChanged re-renders a shown file message whose file changed state.
function fileChanged(info) {
  const shown = app.cur?.msgs.get(info.id);
  if (!shown || !shown.m.file) return;
  shown.m.file = { ...shown.m.file, state: info.state };
  const progress = shown.el.querySelector('progress');
  shown.el.querySelector('.file').replaceWith(renderFile(shown.m));
  if (progress && info.state !== 'saved') shown.el.querySelector('.file').append(progress);
}

async function downloadFile(id) {
  try {
    fileChanged(await postJSON(filePath(id, '/download')));
  } catch (e) {
    fail(e);
  }
}

let uploads = 0;

// sendFile sends a file to the open contact or group: the browser streams it to
// the daemon (the progress of that upload shows on the message), which
// encrypts it and sends it on (file.progress events move the same bar).
function sendFile(file) {
  const cur = app.cur;
  if (!cur?.k.files) return;
  const tmp = 'upload-' + ++uploads;
  const now = new Date().toISOString();
  const m = { id: tmp, outgoing: true, text: '', state: 'queued', sent_at: now, received_at: now, cursor: Number.MAX_SAFE_INTEGER,
    file: { id: tmp, name: file.name, size: file.size, mime: file.type, state: 'queued' } };
  const el = renderMessage(m);
  el.querySelector('.file a')?.remove(); // nothing to save before the daemon has it
  el.querySelector('.file img')?.remove();
  cur.msgs.set(tmp, { m, el });
  $('msg-list').append(el);
  $('messages').scrollTop = $('messages').scrollHeight;
  showProgress(tmp, 0, Math.max(file.size, 1), 'up');
  const q = new URLSearchParams({ name: file.name });
  if (file.type) q.set('mime', file.type);
  const xhr = new XMLHttpRequest(); // fetch reports no upload progress
  xhr.open('POST', cur.k.files(cur.id, q));
  xhr.upload.addEventListener('progress', (e) => showProgress(tmp, e.loaded, Math.max(file.size, 1) + 1, 'up'));
  xhr.addEventListener('load', () => {
    cur.msgs.delete(tmp);
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status === 401) {
      el.remove();
      showLogin();
      return;
    }
    if (xhr.status !== 200 || !body) {
      el.remove();
      fail(new APIError(body?.error?.code || 'internal', `${file.name}: ${body?.error?.message || xhr.statusText}`, xhr.status));
      return;
    }
    const sent = { ...m, id: body.id, state: body.state, file: { id: body.id, name: body.name, size: body.size, mime: body.mime, state: body.state } };
    if (cur !== app.cur) return;
    if (cur.msgs.has(body.id)) {
      el.remove(); // an event showed it already
      return;
    }
    const real = renderMessage(sent);
    cur.msgs.set(body.id, { m: sent, el: real });
    el.replaceWith(real);
    refreshConversations();
  });
  xhr.addEventListener('error', () => {
    cur.msgs.delete(tmp);
    el.remove();
    fail(new APIError('unavailable', `${file.name}: the daemon does not answer; is it running?`, 0));
  });
  xhr.send(file);
}

function renderState(state, reason) {
  return h('span', { class: 'state', 'data-state': state, title: reason || null, text: state === 'failed' && reason ? `failed: ${reason}` : state });
}

function setState(id, state, reason) {
  app.states.set(id, later(app.states.get(id), state));
  const shown = app.cur?.msgs.get(id);
  if (!shown) return;
  const next = later(shown.m.state, state);
  if (next === shown.m.state && state !== 'failed') return;
  shown.m.state = state === 'failed' ? 'failed' : next;
  shown.m.reason = reason;
  shown.el.querySelector('.state')?.replaceWith(renderState(shown.m.state, reason));
}

async function loadOlder() {
  const cur = app.cur;
  if (!cur || cur.atStart || cur.loadingOlder) return;
  cur.loadingOlder = true;
  try {
    const page = await cur.k.messages(cur.id, cur.oldest);
    if (cur !== app.cur) return;
    const box = $('messages');
    const before = box.scrollHeight - box.scrollTop;
    cur.atStart = page.length < PAGE;
    appendMessages(page, 'start');
    box.scrollTop = box.scrollHeight - before;
    $('older').hidden = cur.atStart;
  } catch (e) {
    fail(e);
  } finally {
    cur.loadingOlder = false;
  }
}

async function send(ev) {
  ev.preventDefault();
  const cur = app.cur;
  const input = $('msg-input');
  const text = input.value;
  if (!cur || !text.trim() || input.disabled) return;
  $('send').disabled = true;
  try {
    const res = await cur.k.send(cur.id, text);
    input.value = '';
    autosize();
    if (cur === app.cur) {
      const now = new Date().toISOString();
      appendMessages([{ id: res.id, outgoing: true, text, state: res.state, sent_at: now, received_at: now, cursor: Number.MAX_SAFE_INTEGER }], 'end');
      const box = $('messages');
      box.scrollTop = box.scrollHeight;
    }
    refreshConversations();
  } catch (e) {
    fail(e);
    if (e instanceof APIError && e.code === 'untrusted_identity') reloadInfo();
  } finally {
    $('send').disabled = $('msg-input').disabled;
    input.focus();
  }
}

function autosize() {
  const input = $('msg-input');
  input.style.height = 'auto';
  input.style.height = Math.min(input.scrollHeight, 200) + 'px';
}

async function reloadInfo() {
  const cur = app.cur;
  if (!cur) return;
  try {
    const info = await cur.k.load(cur.id);
    if (cur === app.cur) {
      cur.info = info;
      renderHeader();
    }
  } catch (e) {
    fail(e);
  }
}

// markReadIfSeen marks the open conversation read when the person can
// see it, and redraws the list.
async function markReadIfSeen() {
  const cur = app.cur;
  if (cur && cur.k.markRead && document.visibilityState === 'visible' && cur.info?.state !== 'request') {
    try {
      await cur.k.markRead(cur.id);
    } catch (e) {
      fail(e);
    }
  }
  refreshConversations();
}

// ---- live updates -------------------------------------------------------

function connectEvents() {
  const es = new EventSource('/v1/events');
  app.events = es;
  let opened = false;
  es.addEventListener('open', () => {
    if (opened) resync(); // reconnected: what happened meanwhile is unknown
    opened = true;
  });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      // Refused (the session ended?): find out, and try again later.
      app.events = null;
      getJSON('/v1/id').then(() => setTimeout(() => { if (!app.events) connectEvents(); }, 3000), () => {});
    }
  });
  const on = (type, fn) => es.addEventListener(type, (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    fn(ev.data || {});
  });
  on('message.received', (m) => {
    if (app.cur && app.cur.kind === 'contact' && m.peer === app.cur.id) {
      const box = $('messages');
      const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      appendMessages([m], 'end');
      if (atEnd) box.scrollTop = box.scrollHeight;
      markReadIfSeen();
    } else {
      refreshConversations();
    }
  });
  on('message.state', (s) => {
    setState(s.id, s.state, s.reason);
    if (s.state === 'failed') refreshConversations();
  });
  on('contact.request', () => refreshConversations());
  on('group.message', (m) => {
    if (app.cur?.kind === 'group' && m.group_id === app.cur.id) {
      const box = $('messages');
      const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      appendMessages([m], 'end');
      if (atEnd) box.scrollTop = box.scrollHeight;
      if (!m.outgoing) {
        markReadIfSeen();
        return;
      }
    }
    refreshConversations();
  });
  const groupChanged = (d) => {
    refreshConversations();
    if (app.cur?.kind === 'group' && d.group_id === app.cur.id) {
      reloadInfo().then(() => { if ($('dlg-members').open) renderMembers(); });
    }
  };
  on('group.member', groupChanged);
  on('group.request', groupChanged);
  on('file.progress', (p) => showProgress(p.id, p.bytes, p.total, p.direction));
  on('file.state', (f) => fileChanged(f));
  on('identity.changed', (d) => {
    refreshConversations();
    if (app.cur?.kind === 'group' || app.cur && (app.cur.info?.name === d.name || app.cur.id === d.user_id)) reloadInfo();
  });
  on('peer.connected', () => refreshStatusSoon());
  on('peer.disconnected', () => refreshStatusSoon());
  on('relay.status', () => {
    refreshStatusSoon();
    if ($('dlg-relays').open) refreshRelays();
  });
  // The daemon ends the stream after an overflow; EventSource reconnects
  // and open resyncs.
}

let statusTimer = 0;
function refreshStatusSoon() {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(refreshStatus, 300);
}

function resync() {
  refreshConversations();
  refreshStatus();
  if (app.cur) openConversation(app.cur.kind, app.cur.id);
}

// ---- dialogs ------------------------------------------------------------

function openDialog(id) {
  const d = $(id);
  for (const e of d.querySelectorAll('.error')) e.hidden = true;
  d.showModal();
  return d;
}

async function createInvite() {
  const btn = $('create-invite');
  btn.disabled = true;
  try {
    const inv = await postJSON('/v1/invites');
    $('invite-link').value = inv.link;
    $('invite-qr').src = '/qr.svg?text=' + encodeURIComponent(inv.link);
    $('invite-expires').textContent = 'The link works until ' + dateFmt.format(new Date(inv.expires_at)) + '.';
    openDialog('dlg-invite');
    $('invite-link').select();
  } catch (e) {
    fail(e);
  } finally {
    btn.disabled = false;
  }
}

async function copyInvite() {
  const link = $('invite-link');
  try {
    await navigator.clipboard.writeText(link.value);
    $('invite-copy').textContent = 'Copied';
    setTimeout(() => { $('invite-copy').textContent = 'Copy link'; }, 2000);
  } catch {
    link.select(); // the clipboard needs permission; selected, it copies with Ctrl+C
  }
}

async function addContact(ev) {
  ev.preventDefault();
  const err = $('add-error');
  err.hidden = true;
  const link = $('add-link').value.trim();
  const name = $('add-name').value.trim();
  if (!link) return;
  $('add-submit').disabled = true;
  try {
    const c = await postJSON('/v1/contacts', name ? { link, name } : { link });
    $('dlg-add').close();
    $('add-form').reset();
    await refreshConversations();
    location.hash = kinds.contact.route(c.user_id);
  } catch (e) {
    fail(e, err);
  } finally {
    $('add-submit').disabled = false;
  }
}

function showVerify() {
  const c = app.cur?.info;
  if (!c) return;
  const changed = !!c.identity_changed;
  $('dlg-verify-title').textContent = `Safety number with ${c.name}`;
  $('verify-text').textContent = changed
    ? `${c.name} presents a new identity key. Compare this new safety number with them, in person or over a call you trust; mark it verified only if the numbers match.`
    : `Compare this number with the one ${c.name} sees, in person or over a call you trust. If they match, nobody is in the middle.`;
  $('verify-number').textContent = changed ? c.pending_safety_number : c.safety_number;
  $('verify-uid').textContent = changed ? c.pending_user_id : c.user_id;
  $('verify-confirm').textContent = changed ? 'Verify the new key' : c.verified ? 'Verified' : 'Mark as verified';
  $('verify-confirm').disabled = !changed && c.verified;
  openDialog('dlg-verify');
}

async function confirmVerify() {
  const c = app.cur?.info;
  if (!c) return;
  const number = c.identity_changed ? c.pending_safety_number : c.safety_number;
  try {
    const updated = await postJSON(contactPath(app.cur.id, '/verify'), { safety_number: number });
    $('dlg-verify').close();
    if (updated.user_id !== app.cur.id) {
      location.hash = kinds.contact.route(updated.user_id); // the history moved to the new key
    } else {
      app.cur.info = updated;
      renderHeader();
    }
    refreshConversations();
  } catch (e) {
    fail(e, $('verify-error'));
  }
}

function showRemove() {
  const c = app.cur?.info;
  if (!c) return;
  $('dlg-remove-title').textContent = c.state === 'request' ? 'Remove message request' : 'Remove contact';
  $('remove-text').textContent = `Remove ${c.name} and your conversation with them from this node? Their messages will arrive as a message request if they write again.`;
  openDialog('dlg-remove');
}

async function confirmRemove() {
  const cur = app.cur;
  if (!cur) return;
  try {
    await api('DELETE', contactPath(cur.id));
    $('dlg-remove').close();
    location.hash = '#/';
    refreshConversations();
  } catch (e) {
    $('dlg-remove').close();
    fail(e);
  }
}

async function accept() {
  const cur = app.cur;
  if (!cur) return;
  if (cur.kind === 'group') {
    answerGroup('accept');
    return;
  }
  try {
    cur.info = await postJSON(contactPath(cur.id, '/accept'));
    renderHeader();
    markReadIfSeen();
    $('msg-input').focus();
  } catch (e) {
    fail(e);
  }
}

async function createGroup(ev) {
  ev.preventDefault();
  const name = $('group-name').value.trim();
  if (!name) return;
  $('group-create').disabled = true;
  try {
    const g = await postJSON('/v1/groups', { name });
    $('dlg-group').close();
    $('group-form').reset();
    await refreshConversations();
    location.hash = kinds.group.route(g.id);
  } catch (e) {
    fail(e, $('group-error'));
  } finally {
    $('group-create').disabled = false;
  }
}

// renderMembers fills the members dialog from the open group: members
// (an admin can remove them), those invited, and the contacts to add.
function renderMembers() {
  const g = app.cur?.info;
  if (!g || app.cur.kind !== 'group') return;
  $('dlg-members-title').textContent = `Members of ${g.name}`;
  const items = (g.members || []).map((m) => {
    const name = m.self ? 'You' : m.name || m.user_id;
    const tags = [m.admin ? 'admin' : null, m.identity_changed ? 'safety number changed' : null].filter(Boolean).join(' · ');
    return h('li', { class: 'member' },
      h('span', { text: name }),
      tags ? h('span', { class: 'note', text: tags }) : null,
      g.admin && !m.self && g.state === 'active'
        ? h('button', { type: 'button', 'aria-label': `Remove ${name} from the group`, text: 'Remove', onclick: () => removeMember(m.user_id) })
        : null);
  });
  replaceItems($('member-list'), items);
  const invited = (g.invited || []).map((u) => nameOf(u) || u);
  $('invited').hidden = invited.length === 0;
  $('invited').textContent = invited.length ? 'Invited, not joined yet: ' + invited.join(', ') : '';
  const in_ = new Set([...(g.members || []).map((m) => m.user_id), ...(g.invited || [])]);
  const candidates = app.convs.filter((c) => c.kind === 'contact' && c.contact?.state !== 'request' && !in_.has(c.id));
  $('member-candidates').replaceChildren(...candidates.map((c) =>
    h('label', {}, h('input', { type: 'checkbox', value: c.id }), c.name)));
  $('member-none').hidden = candidates.length > 0;
  $('member-form').hidden = !g.admin || g.state !== 'active';
  $('leave').hidden = g.state !== 'active';
}

async function showMembers() {
  await reloadInfo();
  renderMembers();
  openDialog('dlg-members');
}

async function groupAction(path, body) {
  const cur = app.cur;
  $('members-error').hidden = true;
  try {
    await postJSON(groupPath(cur.id, path), body);
    await reloadInfo();
    renderMembers();
    refreshConversations();
    return true;
  } catch (e) {
    fail(e, $('dlg-members').open ? $('members-error') : null);
    return false;
  }
}

async function addMembers(ev) {
  ev.preventDefault();
  const members = [...$('member-candidates').querySelectorAll('input:checked')].map((i) => i.value);
  if (members.length === 0) return;
  $('member-add').disabled = true;
  await groupAction('/members', { members });
  $('member-add').disabled = false;
}

const removeMember = (userID) => groupAction('/remove', { members: [userID] });

async function leaveGroup() {
  if (await groupAction('/leave')) $('dlg-members').close();
}

async function answerGroup(answer) {
  const cur = app.cur;
  try {
    await postJSON(groupPath(cur.id, '/' + answer));
    if (answer === 'decline') {
      location.hash = '#/';
    } else {
      await reloadInfo();
    }
    refreshConversations();
  } catch (e) {
    fail(e);
  }
}

async function refreshRelays() {
  try {
    const { relays } = await getJSON('/v1/relays');
    const items = relays.map((r) => h('li', { class: 'relay' },
      h('span', { class: 'relay-addr mono', text: r.addrs?.[0] || r.id }),
      h('span', { class: 'relay-state', 'data-state': r.state, text: r.state + (r.error ? `: ${r.error}` : '') }),
      h('span', { class: 'note', text: `${r.stored} waiting · ${r.prekeys} prekeys` }),
      h('button', { type: 'button', 'aria-label': `Remove relay ${r.id}`, text: 'Remove', onclick: () => removeRelay(r.id) })));
    replaceItems($('relay-list'), items);
    $('relay-empty').hidden = items.length > 0;
  } catch (e) {
    fail(e, $('relay-error'));
  }
}

async function showRelays() {
  await refreshRelays();
  openDialog('dlg-relays');
}

async function addRelay(ev) {
  ev.preventDefault();
  const input = $('relay-addr');
  const addr = input.value.trim();
  if (!addr) return;
  $('relay-add').disabled = true;
  $('relay-error').hidden = true;
  try {
    await postJSON('/v1/relays', { addr });
    input.value = '';
    await refreshRelays();
    refreshStatus();
  } catch (e) {
    fail(e, $('relay-error'));
  } finally {
    $('relay-add').disabled = false;
  }
}

async function removeRelay(id) {
  try {
    await api('DELETE', '/v1/relays/' + encodeURIComponent(id));
    await refreshRelays();
    refreshStatus();
  } catch (e) {
    fail(e, $('relay-error'));
  }
}

async function showMe() {
  const facts = [['Name', app.me.name || '(none)'], ['User ID', app.me.user_id], ['Peer ID', app.me.peer_id]];
  const st = app.status;
  if (st) {
    facts.push(['Peers', String(st.peers)], ['Relays', `${st.relays_subscribed} of ${st.relays} receiving`],
      ['Waiting to send', String(st.outbox)], ['Sessions', String(st.sessions)], ['Reachability', st.reachability]);
  }
  $('me-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { class: k.endsWith('ID') ? 'mono' : null, text: v })]));
  openDialog('dlg-me');
}

async function logout() {
  try {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
  } finally {
    showLogin();
  }
}

// ---- wiring -------------------------------------------------------------

function wire() {
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', markReadIfSeen);
  $('composer').addEventListener('submit', send);
  $('msg-input').addEventListener('input', autosize);
  $('msg-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('older').addEventListener('click', loadOlder);
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 80) loadOlder();
  });
  $('create-invite').addEventListener('click', createInvite);
  $('invite-copy').addEventListener('click', copyInvite);
  $('add-contact').addEventListener('click', () => { openDialog('dlg-add'); $('add-link').focus(); });
  $('add-form').addEventListener('submit', addContact);
  $('verify').addEventListener('click', showVerify);
  $('verify-confirm').addEventListener('click', confirmVerify);
  $('remove').addEventListener('click', showRemove);
  $('remove-confirm').addEventListener('click', confirmRemove);
  $('accept').addEventListener('click', accept);
  $('decline').addEventListener('click', () => answerGroup('decline'));
  $('new-group').addEventListener('click', () => { openDialog('dlg-group'); $('group-name').focus(); });
  $('group-form').addEventListener('submit', createGroup);
  $('members').addEventListener('click', showMembers);
  $('member-form').addEventListener('submit', addMembers);
  $('leave').addEventListener('click', leaveGroup);
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', () => {
    for (const f of $('file-input').files) sendFile(f);
    $('file-input').value = '';
  });
  $('relays').addEventListener('click', showRelays);
  $('relay-form').addEventListener('submit', addRelay);
  $('me').addEventListener('click', showMe);
  $('logout').addEventListener('click', logout);
  for (const b of document.querySelectorAll('dialog [data-close]')) {
    b.addEventListener('click', () => b.closest('dialog').close());
  }
}

start();
