// lorag web page: chat with RAG over a knowledge base, sources panel, documents panel.
// Plain ES2020, no dependencies. Model and document text is only ever put into the
// page with createElement/textContent (never innerHTML), so it cannot run anything.
'use strict';

(() => {
  const KEY_STORAGE = 'lorag.key';
  const KB_STORAGE = 'lorag.kb';
  const ADAPTER_STORAGE = 'lorag.adapter';
  const UNREACHABLE = 'The server could not be reached (it may be restarting). Your question was kept; try again.';
  const UNSUPPORTED_TITLE = 'No source supports this sentence';

  const $ = (id) => document.getElementById(id);
  const el = {
    kbSelect: $('kb-select'),
    adapterField: $('adapter-field'),
    adapterSelect: $('adapter-select'),
    newConversation: $('new-conversation'),
    documentsToggle: $('documents-toggle'),
    controls: document.querySelector('.topbar .controls'),
    keyStatus: $('key-status'),
    keyName: $('key-name'),
    keyForget: $('key-forget'),
    notice: $('notice'),
    keyPanel: $('key-panel'),
    keyForm: $('key-form'),
    keyInput: $('key-input'),
    keyError: $('key-error'),
    layout: $('layout'),
    messages: $('messages'),
    emptyHint: $('empty-hint'),
    askForm: $('ask-form'),
    question: $('question'),
    send: $('send'),
    stop: $('stop'),
    side: $('side'),
    sourcePanel: $('source-panel'),
    sourceHeading: $('source-heading'),
    sourceClose: $('source-close'),
    documentsPanel: $('documents-panel'),
    documentsHeading: $('documents-heading'),
    documentsClose: $('documents-close'),
    dropZone: $('drop-zone'),
    fileInput: $('file-input'),
    uploadStatus: $('upload-status'),
    uploadResults: $('upload-results'),
    docStatus: $('doc-status'),
    docTable: $('doc-table'),
  };
  const q = (root, sel) => root.querySelector(sel);
  const sp = {
    name: q(el.sourcePanel, '.source-name'),
    meta: q(el.sourcePanel, '.source-meta'),
    text: q(el.sourcePanel, '.source-text'),
    download: q(el.sourcePanel, '.source-download'),
    error: q(el.sourcePanel, '.source-error'),
  };

  const state = {
    me: null, // answer of GET /v1/me
    history: [], // [{role, content}] sent with every question
    controller: null, // AbortController of the running answer
    sourceOpener: null, // element to give focus back to when the source panel closes
    source: null, // {kb, item} shown in the source panel
  };

  // ---------------------------------------------------------------- small helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  let memoryKey = ''; // used only when sessionStorage is unavailable
  function getKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch (_) { return ''; }
  }
  function setKey(k) {
    try {
      if (k) sessionStorage.setItem(KEY_STORAGE, k);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) { /* storage disabled: the key lives until reload */ }
    memoryKey = k || '';
  }
  function currentKey() { return getKey() || memoryKey; }
  function remember(name, value) {
    try { sessionStorage.setItem(name, value); } catch (_) { /* ignore */ }
  }
  function recall(name) {
    try { return sessionStorage.getItem(name); } catch (_) { return null; }
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const key = currentKey();
    if (key) headers.Authorization = 'Bearer ' + key;
    return headers;
  }

  /** fetch with the key. Network failures reject with err.unreachable = true. */
  async function apiFetch(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(opts.headers);
    opts.cache = 'no-store';
    try {
      return await fetch(path, opts);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      const e = new Error(UNREACHABLE);
      e.unreachable = true;
      throw e;
    }
  }

  /** The message of an error response: the server's error.message when it sent one. */
  async function errorText(res) {
    let msg = '';
    try {
      const body = await res.text();
      try {
        const j = JSON.parse(body);
        if (j && j.error) msg = typeof j.error === 'string' ? j.error : (j.error.message || '');
        else if (j && typeof j.message === 'string') msg = j.message;
      } catch (_) {
        msg = body.trim().slice(0, 300);
      }
    } catch (_) { /* no body */ }
    if (!msg) msg = res.statusText || 'request failed';
    if (res.status === 401) return 'Wrong or missing key: ' + msg;
    if (res.status === 403) return 'Not allowed: ' + msg;
    return msg + ' (HTTP ' + res.status + ')';
  }

  function showNotice(text, isError) {
    if (!text) {
      el.notice.hidden = true;
      el.notice.textContent = '';
      return;
    }
    el.notice.textContent = text;
    el.notice.classList.toggle('error', !!isError);
    el.notice.hidden = false;
  }

  function kbPath(kb) { return '/v1/kb/' + encodeURIComponent(kb); }
  function selectedKb() { return el.kbSelect.value || ''; }
  function selectedKbInfo() {
    const kbs = (state.me && state.me.kbs) || [];
    return kbs.find((k) => k.name === selectedKb()) || null;
  }

  function fmtMs(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return null;
    return (n >= 100 ? Math.round(n) : Math.round(n * 10) / 10) + ' ms';
  }

  function fmtSize(bytes) {
    const n = Number(bytes);
    if (!Number.isFinite(n)) return '';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }

  function fmtWhen(secs) {
    const n = Number(secs);
    if (!Number.isFinite(n) || n <= 0) return '';
    const d = new Date(n * 1000);
    const now = new Date();
    if (d.toDateString() === now.toDateString()) {
      return 'today ' + d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    }
    if (d.getFullYear() === now.getFullYear()) {
      return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
    }
    return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  }

  // ---------------------------------------------------------------- markdown

  const SAFE_SCHEMES = new Set(['http:', 'https:', 'mailto:']);

  /** A URL usable as a link target, or null (relative URLs, javascript:, data: ...). */
  function safeUrl(raw) {
    const s = String(raw || '').trim();
    if (!/^(https?:\/\/|mailto:)/i.test(s)) return null;
    try {
      const u = new URL(s);
      return SAFE_SCHEMES.has(u.protocol) ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)?.*$/;
  const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const HR = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
  const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const LIST_EMPTY_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s*$/;
  const QUOTE = /^ {0,3}>\s?(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function indentOf(s) {
    let n = 0;
    for (const ch of s) {
      if (ch === ' ') n += 1;
      else if (ch === '\t') n += 4;
      else break;
    }
    return n;
  }

  function isTableStart(lines, i) {
    return lines[i].includes('|') && i + 1 < lines.length && lines[i + 1].includes('|') &&
      lines[i + 1].includes('-') && TABLE_SEP.test(lines[i + 1]);
  }

  function isBlockStart(line) {
    return FENCE.test(line) || HEADING.test(line) || HR.test(line) || LIST_ITEM.test(line) || QUOTE.test(line);
  }

  /** Split a table row on pipes that are neither escaped nor inside a code span. */
  function splitRow(line) {
    let s = line.trim();
    if (s.startsWith('|')) s = s.slice(1);
    if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
    const cells = [];
    let cur = '';
    let inCode = false;
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c === '\\' && s[i + 1] === '|') { cur += '|'; i++; continue; }
      if (c === '`') inCode = !inCode;
      if (c === '|' && !inCode) { cells.push(cur.trim()); cur = ''; continue; }
      cur += c;
    }
    cells.push(cur.trim());
    return cells;
  }

  /**
   * Render markdown into a DocumentFragment.
   * ctx.cite(n) -> citation item or null: when given, [n] becomes a.cite[data-n].
   */
  function renderMarkdown(src, ctx) {
    const frag = document.createDocumentFragment();
    const lines = String(src || '').replace(/\r\n?/g, '\n').split('\n');
    try {
      renderBlocks(lines, frag, ctx || {});
    } catch (err) {
      // never lose an answer to a renderer bug: show it as plain text
      console.error('markdown', err);
      frag.replaceChildren(h('p', { class: 'plain' }, String(src || '')));
    }
    return frag;
  }

  function renderBlocks(lines, parent, ctx) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) { i++; continue; }

      // fenced code (an unclosed fence while streaming runs to the end)
      const fence = line.match(FENCE);
      if (fence) {
        const marker = fence[1];
        const lang = (fence[2] || '').replace(/[^\w+#.-]/g, '').slice(0, 30);
        const indent = indentOf(line);
        const body = [];
        i++;
        while (i < lines.length) {
          const l = lines[i];
          const t = l.trim();
          if (t.startsWith(marker[0].repeat(marker.length)) && /^([`~])\1*$/.test(t)) { i++; break; }
          body.push(indent ? l.replace(new RegExp('^ {0,' + indent + '}'), '') : l);
          i++;
        }
        const code = h('code', lang ? { class: 'language-' + lang } : null, body.join('\n'));
        const pre = h('pre', null, code);
        if (lang) pre.setAttribute('data-lang', lang);
        parent.append(pre);
        continue;
      }

      const heading = line.match(HEADING);
      if (heading) {
        const level = Math.min(6, heading[1].length + 2); // page already has h1/h2
        const node = h('h' + level, { class: 'md-h' });
        renderInline(heading[2], node, ctx);
        parent.append(node);
        i++;
        continue;
      }

      if (HR.test(line)) {
        parent.append(h('hr'));
        i++;
        continue;
      }

      if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && lines[i].trim() && (QUOTE.test(lines[i]) || !isBlockStart(lines[i]))) {
          const m = lines[i].match(QUOTE);
          inner.push(m ? m[1] : lines[i]);
          i++;
        }
        const bq = h('blockquote');
        renderBlocks(inner, bq, ctx);
        parent.append(bq);
        continue;
      }

      if (LIST_ITEM.test(line)) {
        i = Math.max(i + 1, renderList(lines, i, parent, ctx));
        continue;
      }

      // table: a row with a pipe followed by a separator row
      if (isTableStart(lines, i)) {
        const header = splitRow(line);
        const aligns = splitRow(lines[i + 1]).map((c) => {
          const l = c.startsWith(':');
          const r = c.endsWith(':');
          return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
        });
        i += 2;
        const rows = [];
        while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
          rows.push(splitRow(lines[i]));
          i++;
        }
        const cols = header.length;
        const table = h('table', { class: 'md-table' });
        const thead = h('thead');
        const htr = h('tr');
        header.forEach((c, k) => {
          const th = h('th', { scope: 'col', class: aligns[k] ? 'align-' + aligns[k] : null });
          renderInline(c, th, ctx);
          htr.append(th);
        });
        thead.append(htr);
        table.append(thead);
        const tbody = h('tbody');
        for (const r of rows) {
          const tr = h('tr');
          for (let k = 0; k < cols; k++) {
            const td = h('td', { class: aligns[k] ? 'align-' + aligns[k] : null });
            renderInline(r[k] || '', td, ctx);
            tr.append(td);
          }
          tbody.append(tr);
        }
        table.append(tbody);
        parent.append(h('div', { class: 'table-wrap' }, table));
        continue;
      }

      // paragraph: up to a blank line or the start of another block
      const para = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !isBlockStart(lines[i]) && !isTableStart(lines, i)) {
        para.push(lines[i]);
        i++;
      }
      const p = h('p');
      renderInline(para.map((l) => l.trim()).join('\n'), p, ctx);
      parent.append(p);
    }
  }

  /** Lists with nesting by indentation. Returns the index of the first line after the list. */
  function renderList(lines, start, parent, ctx) {
    // Collect the items of this list: [{indent, ordered, num, lines: []}]
    const first = lines[start].match(LIST_ITEM);
    const baseIndent = indentOf(first[1]);
    const ordered = /\d/.test(first[2]);
    const list = h(ordered ? 'ol' : 'ul');
    if (ordered) {
      const n = parseInt(first[2], 10);
      if (n !== 1) list.setAttribute('start', String(n));
    }
    let i = start;
    let item = null; // {li, body: []}
    let sawBlank = false;
    const flush = () => {
      if (!item) return;
      renderListItem(item, ctx);
      list.append(item.li);
    };
    while (i < lines.length) {
      const l = lines[i];
      if (!l.trim()) { sawBlank = true; i++; continue; }
      const m = l.match(LIST_ITEM) || (LIST_EMPTY_ITEM.test(l) ? [l, l.match(LIST_EMPTY_ITEM)[1], l.match(LIST_EMPTY_ITEM)[2], ''] : null);
      const ind = indentOf(l);
      if (m && ind <= baseIndent + 1 && ind >= baseIndent - 1 && indentOf(m[1]) < baseIndent + 2) {
        const itemOrdered = /\d/.test(m[2]);
        if (itemOrdered !== ordered) break; // a different kind of list starts
        flush();
        item = { li: h('li'), body: [m[3]] };
        sawBlank = false;
        i++;
        continue;
      }
      if (!item) break;
      if (ind > baseIndent) {
        // continuation or nested block of the current item
        item.body.push(sawBlank ? '' : null, l.slice(Math.min(ind, baseIndent + 2)));
        sawBlank = false;
        i++;
        continue;
      }
      if (!sawBlank && !isBlockStart(l) && ind <= baseIndent) {
        // lazy continuation of the item's paragraph
        item.body.push(null, l.trim());
        i++;
        continue;
      }
      break;
    }
    flush();
    parent.append(list);
    return i;
  }

  function renderListItem(item, ctx) {
    // body holds lines, with null meaning "same paragraph" separators and '' blank lines
    const body = [];
    for (const b of item.body) if (b !== null) body.push(b);
    const hasBlocks = body.slice(1).some((l) => !l.trim() || isBlockStart(l));
    if (!hasBlocks) {
      renderInline(body.map((l) => l.trim()).join('\n'), item.li, ctx);
      return;
    }
    // first line(s) up to a block start become inline text, the rest are blocks
    let k = 1;
    while (k < body.length && body[k].trim() && !isBlockStart(body[k])) k++;
    const head = h('span');
    renderInline(body.slice(0, k).map((l) => l.trim()).join('\n'), head, ctx);
    item.li.append(...head.childNodes);
    const rest = body.slice(k);
    // strip the common indentation of nested lines
    const ind = Math.min(...rest.filter((l) => l.trim()).map(indentOf), 99);
    renderBlocks(rest.map((l) => l.slice(Math.min(ind, indentOf(l)))), item.li, ctx);
  }

  const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;

  /** Render inline markdown text into parent. */
  function renderInline(text, parent, ctx) {
    let buf = '';
    const flushText = () => {
      if (!buf) return;
      const parts = buf.split('\n');
      parts.forEach((part, k) => {
        if (k > 0) parent.append(h('br'));
        if (part) parent.append(document.createTextNode(part));
      });
      buf = '';
    };
    const s = text;
    let i = 0;
    while (i < s.length) {
      const c = s[i];

      if (c === '\\' && i + 1 < s.length && PUNCT.test(s[i + 1])) {
        buf += s[i + 1];
        i += 2;
        continue;
      }

      if (c === '`') {
        let n = 1;
        while (s[i + n] === '`') n++;
        const ticks = '`'.repeat(n);
        const end = s.indexOf(ticks, i + n);
        if (end > i + n - 1 && s[end + n] !== '`') {
          flushText();
          let code = s.slice(i + n, end).replace(/\n/g, ' ');
          if (/^ .* $/.test(code) && code.trim()) code = code.slice(1, -1);
          parent.append(h('code', null, code));
          i = end + n;
          continue;
        }
        buf += ticks;
        i += n;
        continue;
      }

      if ((c === '*' || c === '_') && s[i + 1] === c) {
        const delim = c + c;
        const canOpen = s[i + 2] && !/\s/.test(s[i + 2]) && (c === '*' || i === 0 || !/[\p{L}\p{N}]/u.test(s[i - 1]));
        const end = canOpen ? findClose(s, delim, i + 2) : -1;
        if (end > i + 2) {
          flushText();
          const strong = h('strong');
          renderInline(s.slice(i + 2, end), strong, ctx);
          parent.append(strong);
          i = end + 2;
          continue;
        }
      }

      if (c === '*' || c === '_') {
        const canOpen = s[i + 1] && !/\s/.test(s[i + 1]) && s[i + 1] !== c &&
          (c === '*' || i === 0 || !/[\p{L}\p{N}]/u.test(s[i - 1]));
        const end = canOpen ? findClose(s, c, i + 1) : -1;
        if (end > i + 1) {
          flushText();
          const em = h('em');
          renderInline(s.slice(i + 1, end), em, ctx);
          parent.append(em);
          i = end + 1;
          continue;
        }
      }

      if (c === '[') {
        // [text](url): a link only for http, https and mailto; otherwise the text alone
        const link = matchLink(s, i);
        if (link) {
          flushText();
          const href = safeUrl(link.url);
          if (href) {
            const a = h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' });
            renderInline(link.text, a, Object.assign({}, ctx, { noLinks: true }));
            parent.append(a);
          } else {
            const span = h('span', { class: 'unsafe-link', title: 'Link not followed: ' + link.url });
            renderInline(link.text, span, Object.assign({}, ctx, { noLinks: true }));
            parent.append(span);
          }
          i = link.end;
          continue;
        }
        // [n] or [n, m] citations
        const cm = /^\[(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\]/.exec(s.slice(i, i + 64));
        if (cm && ctx.cite && !ctx.noLinks) {
          const nums = cm[1].split(/\s*[,;]\s*/).map((x) => parseInt(x, 10));
          if (nums.every((n) => ctx.cite(n))) {
            flushText();
            nums.forEach((n) => {
              const item = ctx.cite(n);
              const label = 'Source ' + n + (item.source ? ': ' + item.source : '');
              const a = h('a', { class: 'cite', href: '#source-panel', 'data-n': n, 'aria-label': label, title: label }, '[' + n + ']');
              parent.append(a);
            });
            i += cm[0].length;
            continue;
          }
        }
      }

      buf += c;
      i++;
    }
    flushText();
  }

  function findClose(s, delim, from) {
    let j = from;
    while (j < s.length) {
      const k = s.indexOf(delim, j);
      if (k < 0) return -1;
      if (s[k - 1] === '\\') { j = k + 1; continue; }
      if (/\s/.test(s[k - 1])) { j = k + 1; continue; }
      if (delim.length === 1 && s[k + 1] === delim) {
        // part of a double delimiter: skip the pair
        j = k + 2;
        continue;
      }
      if (delim[0] === '_' && s[k + delim.length] && /[\p{L}\p{N}]/u.test(s[k + delim.length])) { j = k + 1; continue; }
      return k;
    }
    return -1;
  }

  function matchLink(s, i) {
    // find the matching ] (allowing nested brackets one level deep)
    let depth = 0;
    let j = i;
    for (; j < s.length; j++) {
      if (s[j] === '\\') { j++; continue; }
      if (s[j] === '[') depth++;
      else if (s[j] === ']') { depth--; if (depth === 0) break; }
      else if (s[j] === '\n' && s[j + 1] === '\n') return null;
    }
    if (j >= s.length || s[j + 1] !== '(') return null;
    // the closing parenthesis, allowing balanced ones inside the URL
    let close = -1;
    let parens = 0;
    for (let k = j + 2; k < s.length; k++) {
      const ch = s[k];
      if (ch === '\\') { k++; continue; }
      if (ch === '\n') break;
      if (ch === '(') parens++;
      else if (ch === ')') {
        if (parens === 0) { close = k; break; }
        parens--;
      }
    }
    if (close < 0) return null;
    let url = s.slice(j + 2, close).trim();
    const titled = url.match(/^(\S+)\s+["'(].*["')]$/);
    if (titled) url = titled[1];
    if (url.startsWith('<') && url.endsWith('>')) url = url.slice(1, -1);
    if (/\s/.test(url)) return null;
    return { text: s.slice(i + 1, j), url, end: close + 1 };
  }

  // ---------------------------------------------------------------- unsupported sentences

  const BLOCK_TAGS = new Set(['P', 'LI', 'TD', 'TH', 'PRE', 'BLOCKQUOTE', 'H3', 'H4', 'H5', 'H6', 'UL', 'OL', 'TABLE', 'TR', 'DIV']);

  function blockOf(node, root) {
    let n = node.parentNode;
    while (n && n !== root && !BLOCK_TAGS.has(n.nodeName)) n = n.parentNode;
    return n;
  }

  function normalizeSentence(s) {
    return String(s || '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // links -> their text
      .replace(/(\*\*|__|[*`])/g, '')
      .replace(/\s+/g, ' ')
      .trim();
  }

  /**
   * Wrap the text of `sentence` in span.unsupported. The sentence may cross inline
   * elements (bold, citation links); it is then wrapped piece by piece. Whitespace
   * is compared collapsed. Returns whether it was found.
   */
  function markSentence(root, sentence) {
    const target = normalizeSentence(sentence);
    if (!target) return false;
    const candidates = [target];
    const noCites = target.replace(/\s*\[\d+(?:\s*[,;]\s*\d+)*\]/g, '').trim();
    if (noCites && noCites !== target) candidates.push(noCites);
    const trimmedEnd = noCites.replace(/[.!?;:]+$/, '').trim();
    if (trimmedEnd && !candidates.includes(trimmedEnd)) candidates.push(trimmedEnd);

    // flatten the text: chars plus, for each, its text node and offset
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let flat = '';
    const map = []; // map[k] = [node, offset] or null for virtual separators
    let lastBlock = null;
    let lastSpace = true;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const block = blockOf(node, root);
      if (block !== lastBlock) {
        flat += '\n';
        map.push(null);
        lastBlock = block;
        lastSpace = true;
      }
      const t = node.nodeValue;
      for (let k = 0; k < t.length; k++) {
        const ch = t[k];
        if (/\s/.test(ch)) {
          if (lastSpace) continue;
          flat += ' ';
          lastSpace = true;
        } else {
          flat += ch;
          lastSpace = false;
        }
        map.push([node, k]);
      }
      // a <br> between text nodes of one block counts as a space
      if (node.nextSibling && node.nextSibling.nodeName === 'BR' && !lastSpace) {
        flat += ' ';
        map.push(null);
        lastSpace = true;
      }
    }
    let start = -1;
    let found = '';
    for (const cand of candidates) {
      start = flat.indexOf(cand);
      if (start >= 0) { found = cand; break; }
    }
    if (start < 0) return false;
    const end = start + found.length; // exclusive

    // group the covered chars by text node: node -> [from, to)
    const ranges = new Map();
    for (let k = start; k < end; k++) {
      const m = map[k];
      if (!m) continue;
      const [node, off] = m;
      const r = ranges.get(node);
      if (r) r[1] = off + 1;
      else ranges.set(node, [off, off + 1]);
    }
    for (const [node, [from, to]] of ranges) {
      let mid = node;
      if (to < mid.nodeValue.length) mid.splitText(to);
      if (from > 0) mid = mid.splitText(from);
      const span = h('span', { class: 'unsupported', title: UNSUPPORTED_TITLE });
      mid.parentNode.replaceChild(span, mid);
      span.append(mid);
    }
    return true;
  }

  // ---------------------------------------------------------------- key and /v1/me

  function showKeyForm(message) {
    el.keyPanel.hidden = false;
    el.layout.hidden = true; // the conversation stays, hidden, until a key works
    if (message) {
      el.keyError.textContent = message;
      el.keyError.hidden = false;
    } else {
      el.keyError.hidden = true;
      el.keyError.textContent = '';
    }
    el.keyInput.focus();
  }

  function hideKeyForm() {
    el.keyPanel.hidden = true;
    el.layout.hidden = false;
    el.keyError.hidden = true;
    el.keyError.textContent = '';
  }

  async function loadMe() {
    let res;
    try {
      res = await apiFetch('/v1/me');
    } catch (err) {
      showNotice(err.unreachable ? 'The server could not be reached (it may be restarting). Reload the page or try again in a moment.' : String(err.message || err), true);
      scheduleMeRetry();
      return false;
    }
    if (res.status === 401) {
      const msg = await errorText(res);
      state.me = null;
      setControlsEnabled(false);
      showNotice('');
      showKeyForm(currentKey() ? msg : '');
      return false;
    }
    if (!res.ok) {
      showNotice(await errorText(res), true);
      return false;
    }
    let me;
    try {
      me = await res.json();
    } catch (_) {
      showNotice('The server sent an unreadable answer to GET /v1/me.', true);
      return false;
    }
    state.me = me;
    showNotice('');
    hideKeyForm();
    applyMe();
    return true;
  }

  let meRetry = null;
  function scheduleMeRetry() {
    if (meRetry) return;
    meRetry = setTimeout(async () => {
      meRetry = null;
      if (!state.me) await loadMe();
    }, 5000);
  }

  function applyMe() {
    const me = state.me;
    // KBs the key may read
    me.kbs = (Array.isArray(me.kbs) ? me.kbs : [])
      .map((k) => (typeof k === 'string' ? { name: k, may_ingest: false } : k))
      .filter((k) => k && typeof k.name === 'string');
    const kbs = me.kbs;
    const previous = selectedKb() || recall(KB_STORAGE);
    el.kbSelect.replaceChildren();
    for (const kb of kbs) {
      el.kbSelect.append(h('option', { value: kb.name }, kb.name));
    }
    if (!kbs.length) {
      el.kbSelect.append(h('option', { value: '' }, 'no knowledge base'));
    }
    if (previous && kbs.some((k) => k.name === previous)) el.kbSelect.value = previous;
    el.kbSelect.disabled = kbs.length === 0;

    // adapters
    const adapters = Array.isArray(me.adapters) ? me.adapters : [];
    const prevAdapter = el.adapterSelect.value || recall(ADAPTER_STORAGE) || '';
    el.adapterSelect.replaceChildren(h('option', { value: '' }, 'none'));
    for (const a of adapters) el.adapterSelect.append(h('option', { value: a }, a));
    el.adapterSelect.value = adapters.includes(prevAdapter) ? prevAdapter : '';
    el.adapterField.hidden = adapters.length === 0;

    // key
    if (me.auth && me.key) {
      el.keyName.textContent = 'Key: ' + me.key;
      el.keyStatus.hidden = false;
    } else if (me.auth) {
      el.keyName.textContent = 'Key set';
      el.keyStatus.hidden = false;
    } else {
      el.keyStatus.hidden = true;
    }

    setControlsEnabled(true);
    if (!kbs.length) {
      showNotice('This key may not read any knowledge base.', true);
    }
    updateDocumentsToggle();
  }

  function setControlsEnabled(on) {
    el.send.disabled = !on || !!state.controller;
    el.controls.hidden = !on; // nothing to pick before /v1/me answered
    el.kbSelect.disabled = !on || !(state.me && state.me.kbs && state.me.kbs.length);
    el.adapterSelect.disabled = !on;
    if (!on) {
      el.documentsToggle.hidden = true;
      closeDocuments(false);
    }
  }

  el.keyForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = el.keyInput.value.trim();
    if (!key) {
      showKeyForm('Enter a key.');
      return;
    }
    setKey(key);
    el.keyInput.value = '';
    const ok = await loadMe();
    if (ok) el.question.focus();
  });

  el.keyForget.addEventListener('click', () => {
    setKey('');
    state.me = null;
    el.keyStatus.hidden = true;
    setControlsEnabled(false);
    showKeyForm('');
  });

  /** A 401 anywhere: the key is wrong or was revoked; ask for it again. */
  function onUnauthorized(message) {
    setKey('');
    state.me = null;
    el.keyStatus.hidden = true;
    setControlsEnabled(false);
    showKeyForm(message);
  }

  // ---------------------------------------------------------------- conversation

  function scrollToEnd() {
    const composer = el.askForm.getBoundingClientRect();
    const last = el.messages.lastElementChild;
    if (!last) return;
    const r = last.getBoundingClientRect();
    if (r.bottom > composer.top - 8) {
      window.scrollBy({ top: r.bottom - composer.top + 16 });
    }
  }

  /** Whether the end of the conversation is in view (just above the question box). */
  function atEnd() {
    const last = el.messages.lastElementChild;
    if (!last) return true;
    return last.getBoundingClientRect().bottom <= el.askForm.getBoundingClientRect().top + 48;
  }

  function addUserTurn(text) {
    el.emptyHint.hidden = true;
    const turn = h('div', { class: 'turn user' },
      h('div', { class: 'who' }, 'You'),
      h('div', { class: 'bubble' }, text));
    el.messages.append(turn);
    return turn;
  }

  function addAssistantTurn() {
    const answer = h('div', { class: 'answer pending' });
    answer.append(h('p', { class: 'thinking' }, 'Searching the knowledge base…'));
    const turn = h('div', { class: 'turn assistant' },
      h('div', { class: 'who' }, 'lorag'),
      answer);
    el.messages.append(turn);
    return { turn, answer };
  }

  function addError(container, message) {
    container.append(h('p', { class: 'error' }, message));
  }

  function setStreaming(on) {
    el.send.disabled = on || !state.me;
    el.stop.disabled = !on;
    el.messages.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  function buildLookup(final) {
    const byN = new Map();
    const add = (list) => {
      if (!Array.isArray(list)) return;
      for (const c of list) {
        if (c && c.n !== undefined && c.n !== null && !byN.has(Number(c.n))) byN.set(Number(c.n), c);
      }
    };
    add(final.citations); // citations first: they carry the quote
    add(final.sources);
    return byN;
  }

  function renderFinal(ctx) {
    const { answer, turn, text, final, kb } = ctx;
    const lookup = buildLookup(final);
    answer.classList.remove('pending', 'streaming');
    answer.replaceChildren();
    if (final.refused) {
      answer.classList.add('refused');
      answer.append(h('span', { class: 'refused-icon', 'aria-hidden': 'true' }, 'i'));
      answer.append(h('span', { class: 'visually-hidden' }, 'No answer from the sources: '));
    }
    const body = h('div', { class: 'answer-body' });
    body.append(renderMarkdown(text, { cite: (n) => lookup.get(n) || null }));
    answer.append(body);

    const unsupported = Array.isArray(final.unsupported) ? final.unsupported : [];
    const missed = [];
    for (const sentence of unsupported) {
      if (typeof sentence !== 'string' || !sentence.trim()) continue;
      if (!markSentence(body, sentence)) missed.push(sentence);
    }
    if (missed.length) {
      const note = h('p', { class: 'unsupported-note' }, 'Not supported by any source: ');
      missed.forEach((s, k) => {
        if (k) note.append(' ');
        note.append(h('span', { class: 'unsupported', title: UNSUPPORTED_TITLE }, s));
      });
      answer.append(note);
    }

    // cite links open the source panel
    for (const a of answer.querySelectorAll('a.cite')) {
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        const item = lookup.get(Number(a.dataset.n));
        if (item) openSource(kb, item, a);
      });
    }

    // every source given, compactly, below the answer
    const sources = Array.isArray(final.sources) && final.sources.length ? final.sources : (final.citations || []);
    if (sources.length) {
      const list = h('ul', { class: 'source-list' });
      for (const s of sources) {
        const item = lookup.get(Number(s.n)) || s;
        const label = '[' + s.n + '] ' + (s.title || s.source || 'source') + (s.page ? ', p. ' + s.page : '');
        const b = h('button', { type: 'button', class: 'source-link', 'data-n': s.n, title: s.source || '' }, label);
        b.addEventListener('click', () => openSource(kb, item, b));
        list.append(h('li', null, b));
      }
      const details = h('details', { class: 'sources' }, h('summary', null, 'Sources (' + sources.length + ')'), list);
      turn.append(details);
    }

    const lg = final.lorag || {};
    const parts = [];
    const r = fmtMs(lg.retrieval_ms);
    const f = fmtMs(lg.ttft_ms);
    const t = fmtMs(lg.total_ms);
    if (r) parts.push('retrieval ' + r);
    if (f) parts.push('first token ' + f);
    if (t) parts.push('total ' + t);
    if (parts.length) {
      const timings = h('p', { class: 'timings' }, parts.join(' · '));
      if (lg.query) timings.title = 'Search query: ' + lg.query;
      turn.append(timings);
    }
  }

  async function ask() {
    if (state.controller) return;
    const question = el.question.value.trim();
    if (!question) {
      el.question.focus();
      return;
    }
    if (!state.me) {
      if (!(await loadMe())) return;
    }
    const kb = selectedKb();
    const adapter = el.adapterSelect.value;
    const body = {
      model: state.me.model,
      messages: state.history.concat([{ role: 'user', content: question }]),
      stream: true,
      stream_options: { include_usage: true },
    };
    if (kb) body.kb = kb;
    if (adapter) body.lora = [{ name: adapter, scale: 1.0 }];

    const savedQuestion = el.question.value;
    el.question.value = '';
    addUserTurn(question);
    const { turn, answer } = addAssistantTurn();
    scrollToEnd();

    const controller = new AbortController();
    state.controller = controller;
    setStreaming(true);

    let text = '';
    let final = null;
    let failed = null; // error message shown instead of (or after) the answer
    let unreachable = false;
    let stopped = false;
    let raf = 0;
    const paint = () => {
      raf = 0;
      const follow = atEnd(); // do not pull the page down while the reader scrolled up
      answer.classList.remove('pending');
      answer.classList.add('streaming');
      answer.replaceChildren(renderMarkdown(text));
      if (follow) scrollToEnd();
    };

    try {
      const res = await apiFetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!res.ok) {
        failed = await errorText(res);
        if (res.status === 401) onUnauthorized(failed);
      } else if (!res.body) {
        failed = 'The server sent no answer.';
      } else {
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        let done = false;
        const handleEvent = (raw) => {
          const data = raw.split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          if (!data) return;
          if (data.trim() === '[DONE]') { done = true; return; }
          let chunk;
          try { chunk = JSON.parse(data); } catch (_) { return; }
          if (chunk.error) {
            failed = (chunk.error && chunk.error.message) || String(chunk.error);
            done = true;
            return;
          }
          const choice = chunk.choices && chunk.choices[0];
          const delta = choice && choice.delta && choice.delta.content;
          if (typeof delta === 'string' && delta) {
            text += delta;
            if (!raf) raf = requestAnimationFrame(paint);
          }
          if ('citations' in chunk || 'sources' in chunk || 'refused' in chunk || 'lorag' in chunk || 'unsupported' in chunk) {
            final = Object.assign(final || {}, chunk);
          }
        };
        while (!done) {
          let r;
          try {
            r = await reader.read();
          } catch (err) {
            if (err && err.name === 'AbortError') throw err;
            failed = text ? 'The connection was lost before the answer was complete.' : UNREACHABLE;
            unreachable = !text;
            break;
          }
          if (r.done) {
            buffer += decoder.decode();
            if (buffer.trim()) handleEvent(buffer.replace(/\r/g, ''));
            if (!done && !final && !failed) failed = 'The answer ended early.';
            break;
          }
          buffer += decoder.decode(r.value, { stream: true });
          buffer = buffer.replace(/\r\n?/g, '\n');
          let sep;
          while (!done && (sep = buffer.indexOf('\n\n')) >= 0) {
            const ev = buffer.slice(0, sep);
            buffer = buffer.slice(sep + 2);
            handleEvent(ev);
          }
        }
        if (done && !failed && !final) final = {}; // [DONE] without lorag's fields
        if (done) controller.abort(); // release the connection if the server keeps it
      }
    } catch (err) {
      if (err && err.name === 'AbortError') {
        stopped = !final && !failed;
      } else if (err && err.unreachable) {
        failed = UNREACHABLE;
        unreachable = true;
      } else {
        failed = String((err && err.message) || err);
      }
    } finally {
      if (raf) cancelAnimationFrame(raf);
      state.controller = null;
      setStreaming(false);
    }

    if (failed && !text) {
      // nothing came back: take the turn out of the conversation, keep the question
      turn.classList.add('failed');
      answer.remove();
      addError(turn, failed);
      if (!el.question.value.trim()) el.question.value = savedQuestion;
      if (unreachable) el.question.focus();
      scrollToEnd();
      return;
    }

    const follow = atEnd();
    if (final && !failed) {
      renderFinal({ answer, turn, text, final, kb });
      state.history.push({ role: 'user', content: question }, { role: 'assistant', content: text });
    } else {
      // stopped or broken mid-answer: keep what came, without citations
      answer.classList.remove('pending', 'streaming');
      if (text) answer.replaceChildren(renderMarkdown(text));
      else answer.replaceChildren(h('p', { class: 'muted' }, 'Stopped.'));
      if (stopped && text) {
        answer.append(h('p', { class: 'muted stopped' }, 'Stopped.'));
        state.history.push({ role: 'user', content: question }, { role: 'assistant', content: text });
      }
      if (failed) addError(turn, failed);
      if (!text && !el.question.value.trim()) el.question.value = savedQuestion;
    }
    if (follow || failed) scrollToEnd();
  }

  function stopAnswer() {
    if (state.controller) state.controller.abort();
  }

  function newConversation() {
    stopAnswer();
    state.history = [];
    for (const n of [...el.messages.children]) if (n !== el.emptyHint) n.remove();
    el.emptyHint.hidden = false;
    closeSource(false);
    el.question.focus();
  }

  el.askForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ask();
  });
  el.question.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      ask();
    }
  });
  el.stop.addEventListener('click', stopAnswer);
  el.newConversation.addEventListener('click', newConversation);

  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || ev.defaultPrevented) return;
    const inSource = el.sourcePanel.contains(document.activeElement);
    const inDocs = el.documentsPanel.contains(document.activeElement);
    if (state.controller && !inSource && !inDocs) {
      ev.preventDefault();
      stopAnswer();
    } else if (!el.sourcePanel.hidden && !inDocs) {
      ev.preventDefault();
      closeSource(true);
    } else if (!el.documentsPanel.hidden && inDocs) {
      ev.preventDefault();
      closeDocuments(true);
    }
  });

  el.kbSelect.addEventListener('change', () => {
    remember(KB_STORAGE, selectedKb());
    updateDocumentsToggle();
  });
  el.adapterSelect.addEventListener('change', () => remember(ADAPTER_STORAGE, el.adapterSelect.value));

  // ---------------------------------------------------------------- side column

  function updateSide() {
    const open = !el.sourcePanel.hidden || !el.documentsPanel.hidden;
    el.side.hidden = !open;
    el.layout.classList.toggle('with-side', open);
    el.layout.classList.toggle('with-documents', !el.documentsPanel.hidden);
  }

  function openSource(kb, item, opener) {
    state.source = { kb, item };
    state.sourceOpener = opener || null;
    el.sourceHeading.textContent = 'Source [' + item.n + ']';
    sp.name.textContent = item.source || '';
    sp.meta.replaceChildren();
    const meta = [['Title', item.title], ['Page', item.page], ['Section', item.section]];
    for (const [k, v] of meta) {
      if (v === null || v === undefined || v === '') continue;
      sp.meta.append(h('div', null, h('dt', null, k), h('dd', null, String(v))));
    }
    sp.meta.hidden = !sp.meta.childElementCount;
    const text = typeof item.text === 'string' ? item.text : '';
    const quote = typeof item.quote === 'string' ? item.quote : '';
    sp.text.replaceChildren();
    const at = quote ? text.indexOf(quote) : -1;
    if (at >= 0) {
      sp.text.append(text.slice(0, at), h('mark', null, quote), text.slice(at + quote.length));
    } else {
      sp.text.append(text);
    }
    sp.error.hidden = true;
    sp.error.textContent = '';
    if (item.source && kb) {
      sp.download.href = kbPath(kb) + '/documents/' + encodeURIComponent(item.source) + '/file';
      sp.download.setAttribute('download', baseName(item.source));
      sp.download.setAttribute('aria-label', 'Download ' + baseName(item.source));
      sp.download.parentElement.hidden = false;
    } else {
      sp.download.parentElement.hidden = true;
    }
    el.sourcePanel.hidden = false;
    updateSide();
    for (const a of el.messages.querySelectorAll('.cite.active, .source-link.active')) a.classList.remove('active');
    if (opener) opener.classList.add('active');
    el.sourceHeading.focus();
    const mark = q(sp.text, 'mark');
    if (mark && mark.scrollIntoView) mark.scrollIntoView({ block: 'nearest' });
  }

  function closeSource(restoreFocus) {
    if (el.sourcePanel.hidden) return;
    el.sourcePanel.hidden = true;
    updateSide();
    for (const a of el.messages.querySelectorAll('.cite.active, .source-link.active')) a.classList.remove('active');
    const opener = state.sourceOpener;
    state.sourceOpener = null;
    state.source = null;
    if (restoreFocus) {
      if (opener && opener.isConnected) opener.focus();
      else el.question.focus();
    }
  }

  function baseName(path) {
    const parts = String(path).split(/[\\/]/);
    return parts[parts.length - 1] || 'document';
  }

  el.sourceClose.addEventListener('click', () => closeSource(true));

  sp.download.addEventListener('click', async (ev) => {
    ev.preventDefault();
    if (!state.source) return;
    const { kb, item } = state.source;
    sp.error.hidden = true;
    try {
      const res = await apiFetch(kbPath(kb) + '/documents/' + encodeURIComponent(item.source) + '/file');
      if (!res.ok) {
        const msg = await errorText(res);
        sp.error.textContent = msg;
        sp.error.hidden = false;
        if (res.status === 401) onUnauthorized(msg);
        return;
      }
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: fileNameFrom(res) || baseName(item.source) });
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      sp.error.textContent = err.unreachable ? 'The server could not be reached (it may be restarting). Try again.' : String(err.message || err);
      sp.error.hidden = false;
    }
  });

  function fileNameFrom(res) {
    const cd = res.headers.get('Content-Disposition') || '';
    let m = cd.match(/filename\*\s*=\s*UTF-8''([^;]+)/i);
    if (m) {
      try { return baseName(decodeURIComponent(m[1].trim())); } catch (_) { /* fall through */ }
    }
    m = cd.match(/filename\s*=\s*"([^"]+)"/i) || cd.match(/filename\s*=\s*([^;]+)/i);
    return m ? baseName(m[1].trim()) : '';
  }

  // ---------------------------------------------------------------- documents

  function updateDocumentsToggle() {
    const info = selectedKbInfo();
    const may = !!(info && info.may_ingest);
    el.documentsToggle.hidden = !may;
    if (!may) closeDocuments(false);
    else if (!el.documentsPanel.hidden) refreshDocuments();
  }

  function openDocuments() {
    el.documentsPanel.hidden = false;
    el.documentsToggle.setAttribute('aria-expanded', 'true');
    el.documentsToggle.classList.add('active');
    updateSide();
    el.documentsHeading.focus();
    refreshDocuments();
  }

  function closeDocuments(restoreFocus) {
    if (el.documentsPanel.hidden) return;
    el.documentsPanel.hidden = true;
    el.documentsToggle.setAttribute('aria-expanded', 'false');
    el.documentsToggle.classList.remove('active');
    updateSide();
    if (restoreFocus && !el.documentsToggle.hidden) el.documentsToggle.focus();
  }

  el.documentsToggle.addEventListener('click', () => {
    if (el.documentsPanel.hidden) openDocuments();
    else closeDocuments(true);
  });
  el.documentsClose.addEventListener('click', () => closeDocuments(true));

  let docSeq = 0;
  async function refreshDocuments() {
    const kb = selectedKb();
    if (!kb) return;
    const seq = ++docSeq;
    el.documentsHeading.textContent = 'Documents in ' + kb;
    el.docStatus.textContent = 'Loading…';
    let res;
    try {
      res = await apiFetch(kbPath(kb) + '/documents');
    } catch (err) {
      if (seq === docSeq) el.docStatus.textContent = err.unreachable ? 'The server could not be reached (it may be restarting).' : String(err.message || err);
      return;
    }
    if (seq !== docSeq) return;
    if (!res.ok) {
      const msg = await errorText(res);
      el.docStatus.textContent = msg;
      if (res.status === 401) onUnauthorized(msg);
      return;
    }
    let list;
    try { list = await res.json(); } catch (_) { list = null; }
    if (seq !== docSeq) return;
    const docs = (list && Array.isArray(list.data)) ? list.data : [];
    renderDocTable(kb, docs);
  }

  function renderDocTable(kb, docs) {
    const tbody = el.docTable.tBodies[0];
    tbody.replaceChildren();
    docs = docs.slice().sort((a, b) => String(a.source).localeCompare(String(b.source)));
    for (const d of docs) {
      const del = h('button', { type: 'button', class: 'doc-delete', 'data-source': d.source, 'aria-label': 'Delete ' + d.source }, 'Delete');
      del.addEventListener('click', () => deleteDocument(kb, d.source, del));
      const name = h('td', { class: 'doc-name' }, d.source);
      if (d.size !== undefined && d.size !== null) name.title = fmtSize(d.size);
      const when = h('td', { class: 'doc-when' });
      const ts = Number(d.ingested_at);
      if (Number.isFinite(ts) && ts > 0) {
        const date = new Date(ts * 1000);
        const t = h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, fmtWhen(ts));
        when.append(t);
      }
      when.setAttribute('data-label', 'Ingested');
      tbody.append(h('tr', null,
        name,
        h('td', { class: 'doc-kind', 'data-label': 'Type' }, d.kind || ''),
        h('td', { class: 'num doc-chunks', 'data-label': 'Chunks' }, d.chunks === undefined || d.chunks === null ? '' : String(d.chunks)),
        when,
        h('td', { class: 'doc-actions' }, del)));
    }
    el.docStatus.textContent = docs.length === 1 ? '1 document' : docs.length + ' documents';
  }

  async function deleteDocument(kb, source, button) {
    button.disabled = true;
    el.docStatus.textContent = 'Deleting ' + source + '…';
    let res;
    try {
      res = await apiFetch(kbPath(kb) + '/documents/' + encodeURIComponent(source), { method: 'DELETE' });
    } catch (err) {
      button.disabled = false;
      el.docStatus.textContent = err.unreachable ? 'The server could not be reached (it may be restarting). Try again.' : String(err.message || err);
      return;
    }
    if (!res.ok) {
      button.disabled = false;
      const msg = await errorText(res);
      el.docStatus.textContent = 'Could not delete ' + source + ': ' + msg;
      if (res.status === 401) onUnauthorized(msg);
      return;
    }
    await refreshDocuments();
    el.docStatus.textContent = 'Deleted ' + source + '. ' + el.docStatus.textContent;
    el.documentsHeading.focus();
  }

  async function upload(files) {
    const kb = selectedKb();
    files = Array.from(files || []);
    if (!kb || !files.length) return;
    const form = new FormData();
    for (const f of files) form.append('file', f, f.name);
    el.uploadResults.replaceChildren();
    el.uploadStatus.hidden = false;
    el.uploadStatus.classList.remove('error');
    el.uploadStatus.textContent = 'Uploading ' + (files.length === 1 ? files[0].name : files.length + ' files') + '…';
    el.dropZone.classList.add('busy');
    el.fileInput.disabled = true;
    let res;
    try {
      res = await apiFetch(kbPath(kb) + '/documents', { method: 'POST', body: form });
    } catch (err) {
      el.uploadStatus.textContent = err.unreachable ? 'The server could not be reached (it may be restarting). Try again.' : String(err.message || err);
      el.uploadStatus.classList.add('error');
      return;
    } finally {
      el.dropZone.classList.remove('busy');
      el.fileInput.disabled = false;
      el.fileInput.value = '';
    }
    if (!res.ok) {
      const msg = await errorText(res);
      el.uploadStatus.textContent = 'Upload failed: ' + msg;
      el.uploadStatus.classList.add('error');
      if (res.status === 401) onUnauthorized(msg);
      return;
    }
    let r;
    try { r = await res.json(); } catch (_) { r = {}; }
    const results = Array.isArray(r.files) ? r.files : [];
    if (!results.length && Array.isArray(r.failed)) {
      for (const f of r.failed) results.push({ name: f.source, status: 'failed', error: f.error });
    }
    for (const f of results) {
      const ok = f.status !== 'failed';
      const li = h('li', { class: ok ? 'ok' : 'failed' });
      li.append(h('span', { class: 'upload-icon', 'aria-hidden': 'true' }, ok ? '✓' : '✗'));
      li.append(h('span', { class: 'upload-name' }, f.name || ''));
      let detail;
      if (ok) {
        const n = Number(f.chunks);
        const chunks = Number.isFinite(n) ? (n === 1 ? '1 chunk' : n + ' chunks') : '';
        detail = (f.status || 'ok') + (chunks ? ', ' + chunks : '');
      } else {
        detail = 'failed: ' + (f.error || 'unknown error');
      }
      li.append(h('span', { class: 'upload-detail' }, ' — ' + detail));
      el.uploadResults.append(li);
    }
    const summary = [];
    for (const k of ['added', 'updated', 'unchanged', 'removed']) {
      if (Number(r[k])) summary.push(r[k] + ' ' + k);
    }
    const failedCount = Array.isArray(r.failed) ? r.failed.length : results.filter((f) => f.status === 'failed').length;
    if (failedCount) summary.push(failedCount + ' failed');
    let line = summary.length ? summary.join(', ') : 'Done';
    if (Number.isFinite(Number(r.seconds))) line += ' in ' + Number(r.seconds).toFixed(1) + ' s';
    el.uploadStatus.textContent = line + '.';
    el.uploadStatus.classList.toggle('error', failedCount > 0 && failedCount === results.length);
    refreshDocuments();
  }

  el.fileInput.addEventListener('change', () => upload(el.fileInput.files));

  let dragDepth = 0;
  el.dropZone.addEventListener('dragenter', (ev) => {
    ev.preventDefault();
    dragDepth++;
    el.dropZone.classList.add('over');
  });
  el.dropZone.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy';
  });
  el.dropZone.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.dropZone.classList.remove('over');
  });
  el.dropZone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    dragDepth = 0;
    el.dropZone.classList.remove('over');
    if (ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files.length) upload(ev.dataTransfer.files);
  });
  // a file dropped outside the zone must not navigate away from the conversation
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => ev.preventDefault());

  // ---------------------------------------------------------------- start

  // the sticky side column sits below the header, whose height depends on wrapping
  const topbar = document.querySelector('.topbar');
  const setHeaderHeight = () => {
    document.documentElement.style.setProperty('--header-h', topbar.offsetHeight + 'px');
  };
  if (window.ResizeObserver) new ResizeObserver(setHeaderHeight).observe(topbar);
  setHeaderHeight();

  setStreaming(false);
  setControlsEnabled(false);
  loadMe().then((ok) => { if (ok) el.question.focus(); });
})();
