// Paddock console: live updates. Every string from a transcript (model output, tool output, comments,
// names) is put on the page with textContent, never parsed as HTML. Fragments fetched for refresh are
// rendered and escaped by the gateway.
'use strict';

(function () {
  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : '';
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Refreshes a server-rendered fragment, unless the reader is typing in it.
  function refresh(target, url, ms) {
    setInterval(async function () {
      if (target.contains(document.activeElement) && document.activeElement !== document.body) return;
      try {
        const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/x-fragment' } });
        if (r.ok) target.innerHTML = await r.text();
      } catch (_) { /* the next tick tries again */ }
    }, ms);
  }

  const GATEWAY_KINDS = ['verdict', 'ask', 'approval', 'done', 'end'];

  function str(v) {
    if (v === undefined || v === null) return '';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  // One transcript event as [label, text].
  function describe(ev) {
    const t = str(ev.type);
    if (GATEWAY_KINDS.includes(t) && ev.source !== 'gateway') {
      return ['runner reports ' + t, JSON.stringify(ev)];
    }
    switch (t) {
      case 'message':
        return [ev.role === 'user' ? 'user' : 'assistant', str(ev.text !== undefined ? ev.text : ev.content)];
      case 'tool_call':
        return ['tool call', str(ev.name || ev.tool) + ' ' + str(ev.args !== undefined ? ev.args : ev.input)];
      case 'tool_result':
        return [ev.is_error === true ? 'tool error' : 'tool result', str(ev.output !== undefined ? ev.output : ev.content)];
      case 'verdict': {
        const by = ev.policy ? str(ev.policy) + (ev.rule ? ' / ' + str(ev.rule) : '') : 'policy';
        const tool = ev.tool ? ' ' + str(ev.tool) : '';
        return [str(ev.verdict), str(ev.phase) + tool + ' — ' + by + ': ' + str(ev.reason)];
      }
      case 'ask': {
        const by = ev.policy ? ' (' + str(ev.policy) + (ev.rule ? ' / ' + str(ev.rule) : '') + ')' : '';
        return ['ask', str(ev.phase) + ' ' + str(ev.approval) + ': ' + str(ev.summary) + ' — ' + str(ev.reason) + by];
      }
      case 'approval':
        return [str(ev.status), str(ev.approval) + ' by ' + str(ev.by) + (ev.reason ? ': ' + str(ev.reason) : '')];
      case 'usage':
        return ['usage', str(ev.input_tokens) + ' in, ' + str(ev.output_tokens) + ' out'];
      case 'error':
        return ['error', str(ev.message)];
      case 'done':
      case 'end':
        return [str(ev.phase) || 'done', str(ev.message || ev.reason)];
      default:
        return [t || 'event', JSON.stringify(ev)];
    }
  }

  function kindClass(label) {
    return 'ev-' + String(label).toLowerCase().replace(/[^a-z]+/g, '-');
  }

  const list = document.getElementById('transcript');
  const form = document.getElementById('comment-form');

  function commentItem(ev) {
    const li = el('li', 'comment');
    li.appendChild(el('strong', 'by', str(ev.by)));
    li.appendChild(el('span', 'text', ' ' + str(ev.text)));
    return li;
  }

  function addComment(seq, ev) {
    if (ev.source !== 'console') return addEvent(seq, { type: 'runner reports comment', text: JSON.stringify(ev) });
    if (document.getElementById('ev-' + seq)) return;
    // The event commented on (a comment on a comment joins the event that one is about).
    const on = ev.on !== undefined ? document.getElementById('ev-' + ev.on) : null;
    const target = on ? on.closest('li.ev') : null;
    const li = commentItem(ev);
    li.id = 'ev-' + seq;
    if (target && target.querySelector('ul.comments')) {
      target.querySelector('ul.comments').appendChild(li);
    } else {
      const wrap = el('li', 'ev ev-comment');
      wrap.appendChild(li);
      list.appendChild(wrap);
    }
  }

  function addEvent(seq, ev) {
    if (document.getElementById('ev-' + seq)) return; // replayed after a reconnect
    const [label, text] = describe(ev);
    const li = el('li', 'ev ' + kindClass(label));
    li.id = 'ev-' + seq;
    li.dataset.seq = String(seq);
    const head = el('div', 'head');
    head.appendChild(el('span', 'kind', label));
    if (form) {
      const b = el('button', 'comment-on', 'Comment');
      b.type = 'button';
      b.setAttribute('aria-label', 'Comment on event ' + seq);
      b.addEventListener('click', function () {
        document.getElementById('comment-seq').value = String(seq);
        document.getElementById('comment-on').textContent = ' on event ' + seq;
        document.getElementById('comment-text').focus();
      });
      head.appendChild(b);
    }
    li.appendChild(head);
    li.appendChild(el('pre', 'text', text));
    li.appendChild(el('ul', 'comments'));
    list.appendChild(li);
  }

  if (list) {
    const source = new EventSource(list.dataset.events);
    source.addEventListener('transcript', function (m) {
      let ev;
      try { ev = JSON.parse(m.data); } catch (_) { return; }
      const seq = Number(m.lastEventId);
      if (ev && ev.type === 'comment') addComment(seq, ev); else addEvent(seq, ev || {});
    });
  }

  if (form) {
    form.addEventListener('submit', async function (e) {
      e.preventDefault();
      const text = document.getElementById('comment-text');
      const on = document.getElementById('comment-seq').value;
      const error = document.getElementById('comment-error');
      error.textContent = '';
      const body = { text: text.value };
      if (on !== '') body.on = Number(on);
      try {
        const r = await fetch(form.dataset.comments, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
          body: JSON.stringify(body),
        });
        if (!r.ok) {
          const j = await r.json().catch(function () { return {}; });
          error.textContent = (j.error && j.error.message) || ('The comment was not posted (' + r.status + ').');
          return;
        }
        text.value = '';
        document.getElementById('comment-seq').value = '';
        document.getElementById('comment-on').textContent = '';
      } catch (_) {
        error.textContent = 'The comment was not posted: the console cannot be reached.';
      }
    });
  }

  // A page that answered a form's POST shows its own address, so that a reload does not send the form again.
  const canonical = document.querySelector('meta[name="canonical-path"]');
  if (canonical && canonical.content !== location.pathname) history.replaceState(null, '', canonical.content);

  document.querySelectorAll('[data-refresh-url]').forEach(function (el) {
    refresh(el, el.dataset.refreshUrl, 2000);
  });

  const rows = document.querySelector('tbody[data-refresh="rows"]');
  if (rows) {
    const q = new URLSearchParams(location.search);
    q.set('fragment', 'rows');
    refresh(rows, location.pathname + '?' + q.toString(), 3000);
  }
})();
