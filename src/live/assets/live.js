/*
 * codegen-mcp live view: the coordinator's page at GET /live.
 * Plain ES2020, no framework, no build step, no external requests. Uses the JSON API under
 * /live/api (actors, actor, stream) and ELK (global `ELK`, loaded from /live/assets/elk.js) to
 * draw statecharts. Only the current page of actors (100) is ever in the DOM.
 */
'use strict';
(function () {
  // ---------------------------------------------------------------- constants
  const API = '/live/api';
  const PAGE_SIZE = 100;
  const POLL_MS = 1000;
  const FILTER_DEBOUNCE_MS = 250;
  const MAX_EVENTS = 50;
  const COMPOUND_PADDING = '[top=28,left=12,bottom=12,right=12]';
  const NAME_CHAR_W = 7.2; // 12px monospace state names
  const LABEL_CHAR_W = 7; // edge labels (ELK width estimate)
  const LABEL_H = 14;
  const MAX_LABELS_PER_EDGE = 4;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const ROOT_LAYOUT = {
    'elk.algorithm': 'layered',
    'elk.direction': 'DOWN',
    'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
    'elk.edgeRouting': 'ORTHOGONAL',
    // Edge (and edge label) coordinates relative to the root; `edge.container` is still honoured
    // if an ELK build ignores this option.
    'elk.json.edgeCoords': 'ROOT',
    'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
    'elk.spacing.nodeNode': '24',
    'elk.layered.spacing.nodeNodeBetweenLayers': '36',
    'elk.spacing.edgeLabel': '2',
  };

  // ---------------------------------------------------------------- pure helpers

  /** A state value as dotted text: {"running":"BUSY"} → "running.BUSY"; parallel regions joined by ", ". */
  function stateText(value) {
    if (value == null) return '';
    if (typeof value !== 'object') return String(value);
    const out = [];
    const walk = (v, prefix) => {
      if (v == null) {
        if (prefix) out.push(prefix);
        return;
      }
      if (typeof v !== 'object') {
        out.push(prefix ? prefix + '.' + String(v) : String(v));
        return;
      }
      const keys = Object.keys(v);
      if (!keys.length) {
        if (prefix) out.push(prefix);
        return;
      }
      for (const k of keys) walk(v[k], prefix ? prefix + '.' + k : k);
    };
    walk(value, '');
    return out.join(', ');
  }

  /** Every state path on the way to the current value, ancestors included. */
  function activePaths(value) {
    const set = new Set();
    const walk = (v, prefix) => {
      if (v == null) return;
      if (typeof v !== 'object') {
        set.add(prefix ? prefix + '.' + String(v) : String(v));
        return;
      }
      for (const k of Object.keys(v)) {
        const p = prefix ? prefix + '.' + k : k;
        set.add(p);
        walk(v[k], p);
      }
    };
    walk(value, '');
    return set;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  /** HH:MM:SS.mmm in local time. */
  function clock(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '--:--:--.---';
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  }

  /** FNV-1a of a string, as 8 hex digits. */
  function hashOf(s) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return (h >>> 0).toString(16).padStart(8, '0');
  }

  function isObj(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  function toTransitions(t) {
    if (t == null || t === false) return [];
    if (Array.isArray(t)) return t.flatMap(toTransitions);
    if (typeof t === 'string') return [{ target: t }];
    if (typeof t === 'object') return [t];
    return [];
  }

  function targetsOf(tr) {
    const t = tr.target;
    if (t == null) return [];
    return (Array.isArray(t) ? t : [t]).filter((x) => typeof x === 'string' && x !== '');
  }

  function guardName(g) {
    if (!g) return '';
    if (typeof g === 'string') return g;
    if (typeof g === 'object' && g.type) return String(g.type);
    return 'guard';
  }

  function kindOf(d) {
    if (d.type === 'final' || d.type === 'history') return d.type;
    const hasChildren = isObj(d.states) && Object.keys(d.states).length > 0;
    if (d.type === 'parallel' && hasChildren) return 'parallel';
    return hasChildren ? 'compound' : 'atomic';
  }

  /** The states of a machine definition by dotted path ('' is the machine), and its ids. */
  function modelOf(def) {
    const machineId = typeof def.id === 'string' && def.id ? def.id : '(machine)';
    const states = new Map();
    const ids = new Map();
    const root = { path: '', name: machineId, parent: null, def, children: [], kind: kindOf(def) };
    states.set('', root);
    ids.set(machineId, '');
    const walk = (node) => {
      if (!isObj(node.def.states)) return;
      for (const name of Object.keys(node.def.states)) {
        const d = isObj(node.def.states[name]) ? node.def.states[name] : {};
        const path = node.path ? node.path + '.' + name : name;
        const child = { path, name, parent: node, def: d, children: [], kind: kindOf(d) };
        node.children.push(child);
        states.set(path, child);
        ids.set(machineId + '.' + path, path);
        walk(child);
      }
    };
    walk(root);
    // Explicit ids after the default ones, so they win.
    for (const st of states.values()) if (st.path && typeof st.def.id === 'string' && st.def.id) ids.set(st.def.id, st.path);
    return { machineId, root, states, ids };
  }

  function descend(model, basePath, rel) {
    if (!rel) return model.states.has(basePath) ? basePath : null;
    const p = basePath ? basePath + '.' + rel : rel;
    return model.states.has(p) ? p : null;
  }

  /** The path a transition target names, seen from the state at sourcePath; null when unknown. */
  function resolveTarget(model, sourcePath, target) {
    if (typeof target !== 'string' || !target) return null;
    if (target[0] === '#') {
      const ref = target.slice(1);
      if (model.ids.has(ref)) return model.ids.get(ref);
      const parts = ref.split('.');
      for (let i = parts.length - 1; i >= 1; i--) {
        const head = parts.slice(0, i).join('.');
        if (model.ids.has(head)) return descend(model, model.ids.get(head), parts.slice(i).join('.'));
      }
      return null;
    }
    if (target[0] === '.') return descend(model, sourcePath, target.slice(1));
    const src = model.states.get(sourcePath);
    if (src && src.parent) {
      const r = descend(model, src.parent.path, target);
      if (r != null) return r;
    }
    // From the root (XState wants ".child" there, but be lenient) or as a last resort.
    return descend(model, '', target);
  }

  function initialOf(model, st) {
    let init = st.def.initial;
    if (isObj(init)) init = init.target;
    if (Array.isArray(init)) init = init[0];
    if (typeof init !== 'string' || !init) return null;
    if (init[0] === '#') return resolveTarget(model, st.path, init);
    return descend(model, st.path, init[0] === '.' ? init.slice(1) : init);
  }

  /** Every transition of the definition: drawn edges, internal ones (no target), and the unresolved. */
  function collectTransitions(model) {
    const edges = [];
    const internal = new Map();
    const unresolved = [];
    const add = (sourcePath, trs, base) => {
      for (const tr of toTransitions(trs)) {
        const g = guardName(tr.guard);
        const label = g ? `${base} [${g}]` : base;
        const targets = targetsOf(tr);
        if (!targets.length) {
          if (!internal.has(sourcePath)) internal.set(sourcePath, []);
          internal.get(sourcePath).push(label);
          continue;
        }
        for (const t of targets) {
          const p = resolveTarget(model, sourcePath, t);
          if (p == null) unresolved.push({ source: sourcePath, target: t, label });
          else edges.push({ source: sourcePath, target: p, label });
        }
      }
    };
    for (const st of model.states.values()) {
      const d = st.def;
      if (isObj(d.on)) {
        for (const evt of Object.keys(d.on)) add(st.path, d.on[evt], evt);
      } else if (Array.isArray(d.on)) {
        for (const t of d.on) if (t && t.event != null) add(st.path, t, String(t.event));
      }
      if (d.always) add(st.path, d.always, 'always');
      if (isObj(d.after)) {
        for (const k of Object.keys(d.after)) add(st.path, d.after[k], 'after ' + (/^\d+$/.test(k) ? k + 'ms' : k));
      }
      const invokes = d.invoke ? (Array.isArray(d.invoke) ? d.invoke : [d.invoke]) : [];
      for (const inv of invokes) {
        if (!isObj(inv)) continue;
        const src = typeof inv.src === 'string' && inv.src !== 'inline' ? inv.src : typeof inv.id === 'string' ? inv.id : '';
        if (inv.onDone) add(st.path, inv.onDone, src ? `done: ${src}` : 'onDone');
        if (inv.onError) add(st.path, inv.onError, src ? `error: ${src}` : 'onError');
      }
      if (d.onDone) add(st.path, d.onDone, 'onDone');
    }
    return { edges, internal, unresolved };
  }

  const isAncestorPath = (a, b) => a === '' || b.startsWith(a + '.');

  /**
   * The ELK graph of a model. `swapped` works around ELK builds that read a compound node's
   * minimum size transposed under direction DOWN with INCLUDE_CHILDREN (see probeMinSize).
   */
  function buildElkGraph(model, trans, opts) {
    const swapped = !!(opts && opts.swapped);
    const skipHierarchical = !!(opts && opts.skipHierarchical);
    const edges = [];
    const edgeMeta = new Map();
    let n = 0;
    const minSize = (w, h) => (swapped ? `(${h}, ${w})` : `(${w}, ${h})`);
    const nodeOf = (st) => {
      const id = 's:' + st.path;
      if ((st.kind === 'compound' || st.kind === 'parallel') && st.children.length) {
        const labelW = Math.ceil((st.name.length + (st.kind === 'parallel' ? 2 : 0)) * NAME_CHAR_W + 24);
        const node = {
          id,
          layoutOptions: {
            'elk.padding': COMPOUND_PADDING,
            'elk.nodeSize.constraints': 'MINIMUM_SIZE',
            'elk.nodeSize.minimum': minSize(labelW, 56),
          },
          children: [],
        };
        addInitial(st, node.children);
        for (const c of st.children) node.children.push(nodeOf(c));
        return node;
      }
      if (st.kind === 'history') return { id, width: 30, height: 30 };
      const w = Math.max(56, Math.ceil(st.name.length * NAME_CHAR_W + 24)) + (st.kind === 'final' ? 8 : 0);
      return { id, width: w, height: st.kind === 'final' ? 34 : 30 };
    };
    const addInitial = (st, into) => {
      if (st.kind === 'parallel') return;
      const ip = initialOf(model, st);
      if (ip == null || ip === st.path) return;
      const iid = 'i:' + st.path;
      into.push({ id: iid, width: 10, height: 10 });
      const eid = 'e' + n++;
      edges.push({ id: eid, sources: [iid], targets: ['s:' + ip], labels: [] });
      edgeMeta.set(eid, { source: null, target: ip, labels: [], initial: true });
    };

    const children = [];
    if (model.root.kind === 'compound') addInitial(model.root, children);
    for (const c of model.root.children) children.push(nodeOf(c));

    const pairs = new Map();
    const globals = [];
    let dropped = 0;
    for (const e of trans.edges) {
      if (e.source === '' || e.target === '') {
        globals.push(e);
        continue;
      }
      if (skipHierarchical && e.source !== e.target && (isAncestorPath(e.source, e.target) || isAncestorPath(e.target, e.source))) {
        dropped++;
        continue;
      }
      const k = e.source + '\u0000' + e.target;
      if (!pairs.has(k)) pairs.set(k, { source: e.source, target: e.target, labels: [] });
      const p = pairs.get(k);
      if (!p.labels.includes(e.label)) p.labels.push(e.label);
    }
    for (const p of pairs.values()) {
      const eid = 'e' + n++;
      let shown = p.labels;
      if (shown.length > MAX_LABELS_PER_EDGE) shown = shown.slice(0, MAX_LABELS_PER_EDGE - 1).concat([`+${p.labels.length - MAX_LABELS_PER_EDGE + 1} more`]);
      edges.push({
        id: eid,
        sources: ['s:' + p.source],
        targets: ['s:' + p.target],
        labels: shown.map((text, j) => ({ id: `${eid}:l${j}`, text, width: Math.ceil(text.length * LABEL_CHAR_W) + 4, height: LABEL_H })),
      });
      edgeMeta.set(eid, { source: p.source, target: p.target, labels: p.labels, initial: false });
    }
    const graph = { id: 'root', layoutOptions: Object.assign({}, ROOT_LAYOUT), children, edges };
    return { graph, edgeMeta, globals, dropped };
  }

  let probePromise = null;
  /** Whether this ELK reads 'elk.nodeSize.minimum' of a compound node transposed (a known quirk). */
  function probeMinSize(elk) {
    if (!probePromise) {
      const g = {
        id: 'root',
        layoutOptions: Object.assign({}, ROOT_LAYOUT),
        children: [
          {
            id: 'c',
            layoutOptions: { 'elk.padding': COMPOUND_PADDING, 'elk.nodeSize.constraints': 'MINIMUM_SIZE', 'elk.nodeSize.minimum': '(300, 40)' },
            children: [{ id: 'x', width: 20, height: 20 }],
          },
        ],
        edges: [],
      };
      probePromise = elk
        .layout(g)
        .then((r) => {
          const c = r.children && r.children[0];
          return !!c && c.width < 290 && c.height >= 290;
        })
        .catch(() => false);
    }
    return probePromise;
  }

  /** Lays out a definition: { model, layout, edgeMeta, globals, internal, unresolved, dropped }. */
  async function layoutDefinition(elk, def) {
    const swapped = await probeMinSize(elk);
    const model = modelOf(def);
    const trans = collectTransitions(model);
    let built = buildElkGraph(model, trans, { swapped });
    let layout;
    try {
      layout = await elk.layout(built.graph);
    } catch (err) {
      // Some ELK versions reject edges between a state and its own ancestor: retry without them.
      built = buildElkGraph(model, trans, { swapped, skipHierarchical: true });
      layout = await elk.layout(built.graph);
    }
    return { model, layout, edgeMeta: built.edgeMeta, globals: built.globals, dropped: built.dropped, internal: trans.internal, unresolved: trans.unresolved };
  }

  // ---------------------------------------------------------------- SVG drawing

  function svgEl(tag, attrs, parent) {
    const el = document.createElementNS(SVGNS, tag);
    if (attrs) for (const k of Object.keys(attrs)) if (attrs[k] != null) el.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(el);
    return el;
  }

  function fitText(text, maxPx, charW) {
    const max = Math.max(1, Math.floor(maxPx / charW));
    return text.length > max ? text.slice(0, Math.max(1, max - 1)) + '…' : text;
  }

  function arrowMarker(defs, id, cls) {
    const m = svgEl('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse' }, defs);
    svgEl('path', { d: 'M0,0 L10,5 L0,10 z', class: cls }, m);
  }

  /** The SVG of a laid-out chart. */
  function renderSvg(res) {
    const L = res.layout;
    const W = Math.max(40, Math.ceil(L.width || 0) + 4);
    const H = Math.max(30, Math.ceil(L.height || 0) + 4);
    const svg = svgEl('svg', { class: 'statechart', viewBox: `-2 -2 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': `statechart of ${res.model.machineId}` });
    svg.setAttribute('data-w', String(W));
    svg.setAttribute('data-h', String(H));
    const defs = svgEl('defs', null, svg);
    arrowMarker(defs, 'live-arrow', 'arrow-head');
    arrowMarker(defs, 'live-arrow-hot', 'arrow-head hot');
    const gStates = svgEl('g', { class: 'states' }, svg);
    const gEdges = svgEl('g', { class: 'transitions' }, svg);
    const gLabels = svgEl('g', { class: 'edge-labels' }, svg);

    const abs = new Map([['root', { x: 0, y: 0 }]]);
    const pending = [];
    const initialChildOf = new Set();
    for (const m of res.edgeMeta.values()) if (m.initial) initialChildOf.add(m.target);

    const drawState = (node, x, y) => {
      const path = node.id.slice(2);
      const st = res.model.states.get(path);
      if (!st) return;
      const w = node.width || 0;
      const h = node.height || 0;
      const kinds = ['state', st.kind];
      if (st.parent && st.parent.kind === 'parallel') kinds.push('region');
      if (initialChildOf.has(path)) kinds.push('initial');
      const g = svgEl('g', { class: kinds.join(' '), 'data-path': path }, gStates);
      const tip = [path + (st.kind !== 'atomic' ? ` (${st.kind})` : '')];
      const internal = res.internal.get(path);
      if (internal && internal.length) tip.push('internal: ' + Array.from(new Set(internal)).join(', '));
      svgEl('title', null, g).textContent = tip.join('\n');
      if (st.kind === 'history') {
        svgEl('circle', { class: 'box', cx: x + w / 2, cy: y + h / 2, r: Math.min(w, h) / 2 }, g);
        const t = svgEl('text', { class: 'name', x: x + w / 2, y: y + h / 2 + 4, 'text-anchor': 'middle' }, g);
        t.textContent = st.def.history === 'deep' ? 'H*' : 'H';
        return;
      }
      svgEl('rect', { class: 'box', x, y, width: w, height: h, rx: 7, ry: 7 }, g);
      if (st.kind === 'final') svgEl('rect', { class: 'inner', x: x + 3.5, y: y + 3.5, width: Math.max(0, w - 7), height: Math.max(0, h - 7), rx: 5, ry: 5 }, g);
      if (st.kind === 'compound' || st.kind === 'parallel') {
        svgEl('line', { class: 'header-rule', x1: x, y1: y + 24, x2: x + w, y2: y + 24 }, g);
        const t = svgEl('text', { class: 'name', x: x + 8, y: y + 16 }, g);
        t.textContent = fitText(st.name + (st.kind === 'parallel' ? ' ∥' : ''), w - 14, NAME_CHAR_W);
      } else {
        const t = svgEl('text', { class: 'name', x: x + w / 2, y: y + h / 2 + 4, 'text-anchor': 'middle' }, g);
        t.textContent = fitText(st.name, w - 10, NAME_CHAR_W);
      }
    };

    const draw = (node, ox, oy) => {
      const x = ox + (node.x || 0);
      const y = oy + (node.y || 0);
      abs.set(node.id, { x, y });
      if (node.id.startsWith('s:')) drawState(node, x, y);
      else if (node.id.startsWith('i:')) svgEl('circle', { class: 'init-dot', cx: x + (node.width || 10) / 2, cy: y + (node.height || 10) / 2, r: 4.5 }, gStates);
      for (const e of node.edges || []) pending.push({ e, home: node.id });
      for (const c of node.children || []) draw(c, x, y);
    };
    for (const c of L.children || []) draw(c, 0, 0);
    for (const e of L.edges || []) pending.push({ e, home: 'root' });

    for (const { e, home } of pending) {
      const meta = res.edgeMeta.get(e.id);
      if (!meta) continue;
      // With 'elk.json.edgeCoords: ROOT' there is no container and coordinates are the root's.
      const cont = e.container != null ? e.container : home;
      const off = abs.get(cont) || { x: 0, y: 0 };
      const g = svgEl('g', { class: meta.initial ? 'transition init' : 'transition', 'data-source': meta.source == null ? '' : meta.source, 'data-target': meta.target }, gEdges);
      if (!meta.initial) svgEl('title', null, g).textContent = `${meta.source} → ${meta.target}\n${meta.labels.join('\n')}`;
      for (const s of e.sections || []) {
        const pts = [s.startPoint].concat(s.bendPoints || [], [s.endPoint]).filter(Boolean);
        if (pts.length < 2) continue;
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${(p.x + off.x).toFixed(1)},${(p.y + off.y).toFixed(1)}`).join(' ');
        svgEl('path', { d, 'marker-end': 'url(#live-arrow)' }, g);
      }
      for (const l of e.labels || []) {
        if (!l.text) continue;
        const lx = (l.x || 0) + off.x;
        const ly = (l.y || 0) + off.y;
        const lg = svgEl('g', { class: 'edge-label', 'data-source': meta.source == null ? '' : meta.source }, gLabels);
        svgEl('rect', { x: lx - 1, y: ly, width: (l.width || 0) + 2, height: l.height || LABEL_H, rx: 2, ry: 2 }, lg);
        const t = svgEl('text', { x: lx + 2, y: ly + (l.height || LABEL_H) - 3.5 }, lg);
        t.textContent = l.text;
      }
    }
    return svg;
  }

  // ---------------------------------------------------------------- the page

  function boot() {
    const $ = (id) => document.getElementById(id);
    const els = {
      filter: $('filter'),
      counts: $('counts'),
      prev: $('prev'),
      next: $('next'),
      pageInfo: $('page-info'),
      status: $('status'),
      list: $('actor-list'),
      detail: $('detail'),
      detailEmpty: $('detail-empty'),
      detailBody: $('detail-body'),
      detailId: $('detail-id'),
      detailStatus: $('detail-status'),
      detailMachine: $('detail-machine'),
      detailProcess: $('detail-process'),
      detailParent: $('detail-parent'),
      detailKey: $('detail-key'),
      detailError: $('detail-error'),
      currentState: $('current-state'),
      chart: $('chart'),
      chartNotes: $('chart-notes'),
      chartZoom: $('chart-zoom'),
      events: $('events'),
    };

    const S = {
      offset: 0,
      q: '',
      total: 0,
      revision: undefined,
      listBusy: false,
      listAgain: false,
      lastListAt: 0,
      listOk: true,
      listErr: '',
      auth: false,
      rows: new Map(), // key → { el, cId, cM, cS, cE, sig, actor }
      groups: new Map(), // process → { el, name, count }
      selected: null,
      detail: null, // { key, actor, definition, gone }
      events: [],
      detailToken: 0,
      es: null,
      esKey: '',
      esOpened: false,
      esRetry: 0,
      sse: 'closed', // 'connecting' | 'open' | 'reconnecting' | 'closed'
      chartSvg: null,
      chartKey: '',
      chartFit: true,
      filterTimer: 0,
    };
    const layoutCache = new Map(); // machine id + definition hash → Promise of a layout
    let elk = null;

    const span = (cls) => {
      const s = document.createElement('span');
      s.className = cls;
      return s;
    };
    const note = (text, cls) => {
      const d = document.createElement('div');
      d.className = cls || 'note';
      d.textContent = text;
      return d;
    };

    // ---- network

    async function getJSON(url) {
      let res;
      try {
        res = await fetch(url, { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } });
      } catch (err) {
        const e = new Error('network error');
        e.status = 0;
        throw e;
      }
      let body = null;
      try {
        body = await res.json();
      } catch (_) {
        body = null;
      }
      if (!res.ok) {
        const e = new Error((body && body.error) || `HTTP ${res.status}`);
        e.status = res.status;
        throw e;
      }
      return body;
    }

    function noteError(err) {
      if (err && err.status === 401) S.auth = true;
      else {
        S.listOk = false;
        S.listErr = err && err.message ? err.message : String(err);
      }
      updateStatus();
    }

    function noteOk() {
      S.auth = false;
      S.listOk = true;
      S.listErr = '';
      updateStatus();
    }

    function updateStatus() {
      let text;
      let cls;
      if (S.auth) {
        text = '401: open /live?token=… again';
        cls = 'err';
      } else if (!S.listOk) {
        text = 'reconnecting…' + (S.listErr && S.listErr !== 'network error' ? ` (${S.listErr})` : '');
        cls = 'warn';
      } else if (S.sse === 'open') {
        text = 'connected';
        cls = 'ok';
      } else if (!S.selected) {
        // Without a selection the stream only brings summaries; polling keeps the list fresh.
        text = 'connected';
        cls = 'ok';
      } else if (S.sse === 'connecting' && !S.esOpened) {
        text = 'connecting…';
        cls = 'warn';
      } else {
        text = 'reconnecting…';
        cls = 'warn';
      }
      if (els.status.textContent !== text) els.status.textContent = text;
      els.status.className = cls;
      els.status.setAttribute('data-state', cls);
    }

    // ---- the list

    async function fetchList() {
      if (S.listBusy) {
        S.listAgain = true;
        return;
      }
      S.listBusy = true;
      const q = S.q;
      const offset = S.offset;
      try {
        const data = await getJSON(`${API}/actors?offset=${offset}&limit=${PAGE_SIZE}&q=${encodeURIComponent(q)}`);
        noteOk();
        if (q !== S.q || offset !== S.offset) {
          S.listAgain = true;
          return;
        }
        const total = Number(data && data.total) || 0;
        if (total > 0 && offset >= total) {
          // The list shrank under the current page: go to the last one.
          S.offset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE;
          S.listAgain = true;
          return;
        }
        renderList(data || {});
      } catch (err) {
        noteError(err);
      } finally {
        S.listBusy = false;
        S.lastListAt = Date.now();
        if (S.listAgain) {
          S.listAgain = false;
          setTimeout(fetchList, 0);
        }
      }
    }

    function groupRow(process, count) {
      let g = S.groups.get(process);
      if (!g) {
        const el = document.createElement('div');
        el.className = 'group';
        el.setAttribute('data-process', process);
        const name = span('g-name');
        name.textContent = process;
        const cnt = span('g-count');
        el.append(name, cnt);
        g = { el, count: cnt };
        S.groups.set(process, g);
      }
      const text = count == null ? '' : `${count} actor${count === 1 ? '' : 's'}`;
      if (g.count.textContent !== text) g.count.textContent = text;
      return g.el;
    }

    function rowFor(a, flash) {
      let r = S.rows.get(a.key);
      if (!r) {
        const el = document.createElement('div');
        el.setAttribute('role', 'option');
        el.setAttribute('data-key', a.key);
        const cId = span('a-id');
        const cM = span('a-machine');
        const cS = span('a-state');
        const cE = span('a-event');
        el.append(cId, cM, cS, cE);
        r = { el, cId, cM, cS, cE, sig: '', actor: a };
        S.rows.set(a.key, r);
        flash = false;
      }
      r.actor = a;
      const st = stateText(a.value);
      const ev = a.lastEvent && a.lastEvent.type ? String(a.lastEvent.type) : '';
      const status = String(a.status || '');
      const sig = [a.id, a.machine, st, status, ev, a.depth, a.lastEvent ? a.lastEvent.atMs : '', a.gone ? 1 : 0].join('\u0001');
      if (sig !== r.sig) {
        const changed = r.sig !== '';
        r.sig = sig;
        const el = r.el;
        el.setAttribute('data-id', String(a.id || ''));
        el.setAttribute('data-machine', String(a.machine || ''));
        el.setAttribute('data-state', st);
        el.setAttribute('data-process', String(a.process || ''));
        el.setAttribute('data-status', status);
        r.cId.textContent = String(a.id || a.key);
        r.cId.title = `${a.id}\nkey: ${a.key}${a.parent ? `\nparent: ${a.parent}` : ''}`;
        r.cId.style.paddingLeft = `${Math.max(0, Number(a.depth) || 0) * 14 + 14}px`;
        r.cM.textContent = String(a.machine || '');
        r.cM.title = String(a.machine || '');
        r.cS.textContent = st;
        r.cS.title = st;
        r.cE.textContent = ev;
        r.cE.title = a.lastEvent ? `${ev} at ${clock(a.lastEvent.atMs)}` : '';
        if (changed && flash !== false) {
          el.classList.remove('flash');
          void el.offsetWidth; // restart the animation
          el.classList.add('flash');
        }
      }
      const cls = `actor st-${status || 'unknown'}${a.key === S.selected ? ' selected' : ''}${a.gone ? ' gone' : ''}${r.el.classList.contains('flash') ? ' flash' : ''}`;
      if (r.el.className !== cls) r.el.className = cls;
      r.el.setAttribute('aria-selected', a.key === S.selected ? 'true' : 'false');
      return r;
    }

    function renderList(data) {
      const actors = Array.isArray(data.actors) ? data.actors : [];
      const processes = Array.isArray(data.processes) ? data.processes : [];
      S.total = Number(data.total) || 0;
      const counts = new Map(processes.map((p) => [p.process, p.count]));
      const scroll = els.list.scrollTop;
      const nodes = [];
      const seen = new Set();
      let lastProcess = null;
      for (const a of actors) {
        if (!a || a.key == null) continue;
        if (a.process !== lastProcess) {
          lastProcess = a.process;
          nodes.push(groupRow(String(a.process), counts.get(a.process)));
        }
        seen.add(a.key);
        nodes.push(rowFor(a, true).el);
      }
      for (const k of Array.from(S.rows.keys())) if (!seen.has(k)) S.rows.delete(k);
      if (!nodes.length) nodes.push(note(S.q ? `no actor matches “${S.q}”` : 'no actors', 'empty'));
      els.list.replaceChildren(...nodes);
      els.list.scrollTop = scroll;
      renderCounts(processes);
      renderPager(actors.length);
    }

    function renderCounts(processes) {
      const nodes = processes.map((p) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'proc';
        b.setAttribute('data-process', String(p.process));
        b.title = `filter on ${p.process}`;
        const name = span('p-name');
        name.textContent = String(p.process);
        const c = span('p-count');
        c.textContent = String(p.count);
        b.append(name, c);
        return b;
      });
      const sig = processes.map((p) => `${p.process}:${p.count}`).join(',');
      if (els.counts.getAttribute('data-sig') !== sig) {
        els.counts.setAttribute('data-sig', sig);
        els.counts.replaceChildren(...nodes);
      }
    }

    function renderPager(shown) {
      const from = S.total === 0 || shown === 0 ? 0 : S.offset + 1;
      const to = Math.min(S.offset + Math.max(shown, 0), S.total);
      els.pageInfo.textContent = S.total === 0 ? '0 of 0' : `${from}–${to} of ${S.total}`;
      els.prev.disabled = S.offset <= 0;
      els.next.disabled = S.offset + PAGE_SIZE >= S.total;
    }

    function gotoOffset(offset) {
      const max = S.total > 0 ? Math.floor((S.total - 1) / PAGE_SIZE) * PAGE_SIZE : 0;
      const next = Math.max(0, Math.min(offset, max));
      if (next === S.offset) return;
      S.offset = next;
      els.list.scrollTop = 0;
      fetchList();
    }

    // ---- selection and detail

    function keyFromHash() {
      const m = /(?:^#|&)key=([^&]*)/.exec(location.hash);
      if (!m || !m[1]) return null;
      try {
        return decodeURIComponent(m[1]);
      } catch (_) {
        return m[1];
      }
    }

    function select(key) {
      if (!key) return;
      if (key === S.selected && S.detail) return;
      S.selected = key;
      for (const r of S.rows.values()) {
        const on = r.el.getAttribute('data-key') === key;
        r.el.classList.toggle('selected', on);
        r.el.setAttribute('aria-selected', on ? 'true' : 'false');
      }
      const h = '#key=' + encodeURIComponent(key);
      if (location.hash !== h) {
        try {
          history.replaceState(null, '', h);
        } catch (_) {
          location.hash = h;
        }
      }
      openStream(key);
      loadDetail(key);
    }

    async function loadDetail(key) {
      const token = ++S.detailToken;
      S.detail = null;
      S.events = [];
      els.detailEmpty.hidden = true;
      els.detailBody.hidden = false;
      els.detail.classList.remove('gone');
      els.detailError.hidden = true;
      els.detailId.textContent = key.includes('/') ? key.slice(key.indexOf('/') + 1) : key;
      els.detailKey.textContent = key;
      els.currentState.textContent = '…';
      els.events.replaceChildren();
      if (!S.chartSvg) els.chart.replaceChildren(note('loading…'));
      try {
        const data = await getJSON(`${API}/actor?key=${encodeURIComponent(key)}`);
        if (token !== S.detailToken) return;
        noteOk();
        const actor = (data && data.actor) || { key };
        S.detail = { key, actor, definition: data ? data.definition : null, gone: false };
        S.events = mergeEvents([], Array.isArray(data && data.events) ? data.events : []);
        renderDetail();
        renderEvents();
        await renderChart(token);
      } catch (err) {
        if (token !== S.detailToken) return;
        if (err && err.status === 404) {
          S.detail = { key, actor: null, definition: null, gone: true };
          els.detail.classList.add('gone');
          els.detailStatus.textContent = 'gone';
          els.detailStatus.className = 'badge st-stopped';
          els.currentState.textContent = '';
          els.currentState.setAttribute('data-state', '');
          els.detailMachine.textContent = els.detailProcess.textContent = els.detailParent.textContent = '—';
          showDetailError(`this actor is gone (${err.message || 'not found'})`);
          els.chart.replaceChildren();
          els.chartNotes.replaceChildren();
          S.chartSvg = null;
          S.chartKey = '';
        } else {
          if (err && err.status === 401) noteError(err);
          showDetailError(`could not load the actor: ${err && err.message ? err.message : err}`);
        }
      }
    }

    function showDetailError(text) {
      els.detailError.textContent = text;
      els.detailError.hidden = false;
    }

    function renderDetail() {
      const d = S.detail;
      if (!d || !d.actor) return;
      const a = d.actor;
      els.detailId.textContent = String(a.id || d.key);
      els.detailId.title = d.key;
      els.detailMachine.textContent = a.machine ? String(a.machine) : '— (not a machine)';
      els.detailProcess.textContent = String(a.process || '—');
      els.detailParent.textContent = a.parent ? String(a.parent) : '—';
      els.detailKey.textContent = d.key;
      renderDetailState();
    }

    function renderDetailState() {
      const d = S.detail;
      if (!d || !d.actor) return;
      const st = stateText(d.actor.value);
      els.currentState.textContent = st || '—';
      els.currentState.setAttribute('data-state', st);
      const status = d.gone ? 'stopped' : String(d.actor.status || 'unknown');
      els.detailStatus.textContent = d.gone ? 'gone' : status;
      els.detailStatus.className = `badge st-${status}`;
      els.detail.classList.toggle('gone', !!d.gone);
    }

    /** Adds the incoming events the list does not hold yet (a multiset merge: snapshots may carry the whole ring or only what is new). */
    function mergeEvents(current, incoming) {
      const have = new Map();
      for (const e of current) {
        const k = `${e.atMs}\u0001${e.type}`;
        have.set(k, (have.get(k) || 0) + 1);
      }
      const out = current.slice();
      for (const e of incoming) {
        if (!e || e.type == null) continue;
        const k = `${e.atMs}\u0001${e.type}`;
        const n = have.get(k) || 0;
        if (n > 0) have.set(k, n - 1);
        else out.push({ type: String(e.type), atMs: Number(e.atMs) });
      }
      out.sort((a, b) => (a.atMs || 0) - (b.atMs || 0));
      return out.slice(-MAX_EVENTS);
    }

    function renderEvents() {
      const list = S.events.slice().reverse();
      if (!list.length) {
        const li = document.createElement('li');
        li.className = 'empty';
        li.textContent = 'no events yet';
        els.events.replaceChildren(li);
        return;
      }
      const nodes = list.map((e, i) => {
        const li = document.createElement('li');
        if (i === 0) li.className = 'newest';
        const t = document.createElement('time');
        t.textContent = clock(e.atMs);
        if (isFinite(e.atMs)) t.dateTime = new Date(e.atMs).toISOString();
        const ty = span('ev-type');
        ty.textContent = e.type;
        li.append(t, ty);
        return li;
      });
      els.events.replaceChildren(...nodes);
    }

    // ---- chart

    function getElk() {
      if (elk) return elk;
      if (typeof ELK === 'undefined') return null;
      elk = new ELK(); // global from /live/assets/elk.js
      return elk;
    }

    function getLayout(key, def) {
      if (!layoutCache.has(key)) {
        const engine = getElk();
        const p = layoutDefinition(engine, def).catch((err) => {
          layoutCache.delete(key);
          throw err;
        });
        layoutCache.set(key, p);
        if (layoutCache.size > 64) layoutCache.delete(layoutCache.keys().next().value);
      }
      return layoutCache.get(key);
    }

    async function renderChart(token) {
      const d = S.detail;
      const def = d && d.definition;
      if (!def || typeof def !== 'object') {
        S.chartSvg = null;
        S.chartKey = '';
        els.chart.replaceChildren(note('not a state machine', 'note not-machine'));
        els.chartNotes.replaceChildren();
        return;
      }
      if (!getElk()) {
        S.chartSvg = null;
        S.chartKey = '';
        els.chart.replaceChildren(note('the layout engine did not load (/live/assets/elk.js)', 'note error'));
        els.chartNotes.replaceChildren();
        return;
      }
      let json;
      try {
        json = JSON.stringify(def);
      } catch (_) {
        json = String(Math.random());
      }
      const ck = `${(d.actor && d.actor.machine) || def.id || ''}:${hashOf(json)}`;
      if (ck === S.chartKey && S.chartSvg && els.chart.contains(S.chartSvg)) {
        applyActive();
        return;
      }
      S.chartSvg = null;
      S.chartKey = '';
      els.chart.replaceChildren(note('laying out…'));
      els.chartNotes.replaceChildren();
      let res;
      try {
        res = await getLayout(ck, def);
      } catch (err) {
        if (token === S.detailToken) els.chart.replaceChildren(note(`layout failed: ${err && err.message ? err.message : err}`, 'note error'));
        return;
      }
      if (token !== S.detailToken) return;
      const svg = renderSvg(res);
      S.chartSvg = svg;
      S.chartKey = ck;
      els.chart.replaceChildren(svg);
      renderChartNotes(res);
      fitChart();
      applyActive();
    }

    function renderChartNotes(res) {
      const nodes = [];
      for (const g of res.globals) {
        nodes.push(note(`from any state: ${g.label} → ${g.target === '' ? res.model.machineId : g.target}`));
      }
      const rootInternal = res.internal.get('');
      if (rootInternal && rootInternal.length) nodes.push(note(`machine-level internal: ${Array.from(new Set(rootInternal)).join(', ')}`));
      for (const u of res.unresolved) nodes.push(note(`unresolved target: ${u.source || res.model.machineId} —${u.label}→ ${u.target}`, 'note warn'));
      if (res.dropped) nodes.push(note(`${res.dropped} transition(s) between a state and its ancestor are not drawn`, 'note warn'));
      els.chartNotes.replaceChildren(...nodes);
    }

    function fitChart() {
      const svg = S.chartSvg;
      if (!svg) return;
      const W = Number(svg.getAttribute('data-w')) || 100;
      const H = Number(svg.getAttribute('data-h')) || 100;
      const avail = Math.max(160, els.chart.clientWidth - 12);
      const scale = S.chartFit ? Math.max(0.5, Math.min(1, avail / W)) : 1;
      svg.setAttribute('width', String(Math.round(W * scale)));
      svg.setAttribute('height', String(Math.round(H * scale)));
      els.chartZoom.textContent = S.chartFit ? '1:1' : 'fit';
    }

    /** Moves the highlight to the current value: classes only, no new layout. */
    function applyActive() {
      const svg = S.chartSvg;
      const d = S.detail;
      if (!svg || !d || !d.actor) return;
      const act = activePaths(d.actor.value);
      const leaves = new Set();
      for (const p of act) {
        let leaf = true;
        for (const q of act) {
          if (q.length > p.length && q.startsWith(p + '.')) {
            leaf = false;
            break;
          }
        }
        if (leaf) leaves.add(p);
      }
      for (const g of svg.querySelectorAll('g.state')) {
        const p = g.getAttribute('data-path');
        g.classList.toggle('active', act.has(p));
        g.classList.toggle('current', leaves.has(p));
      }
      for (const g of svg.querySelectorAll('g.transition')) {
        const src = g.getAttribute('data-source');
        const hot = !!src && act.has(src);
        g.classList.toggle('avail', hot);
        for (const path of g.querySelectorAll('path')) path.setAttribute('marker-end', hot ? 'url(#live-arrow-hot)' : 'url(#live-arrow)');
      }
      for (const g of svg.querySelectorAll('g.edge-label')) {
        const src = g.getAttribute('data-source');
        g.classList.toggle('avail', !!src && act.has(src));
      }
    }

    // ---- the stream

    function openStream(key) {
      if (S.es) {
        S.es.close();
        S.es = null;
      }
      clearTimeout(S.esRetry);
      if (typeof EventSource === 'undefined') {
        S.sse = 'closed';
        updateStatus();
        return;
      }
      const es = new EventSource(`${API}/stream?key=${encodeURIComponent(key || '')}`);
      S.es = es;
      S.esKey = key || '';
      S.esOpened = false;
      S.sse = 'connecting';
      updateStatus();
      es.onopen = () => {
        if (S.es !== es) return;
        S.esOpened = true;
        S.sse = 'open';
        updateStatus();
      };
      es.onerror = () => {
        if (S.es !== es) return;
        if (es.readyState === 2 /* CLOSED */) {
          // The browser gave up (an HTTP error such as 401): try again later, and let a list
          // fetch tell what is wrong.
          S.sse = 'closed';
          es.close();
          S.esRetry = setTimeout(() => {
            if (S.es === es) openStream(S.esKey);
          }, S.esKey ? 3000 : 10000);
          fetchList();
        } else {
          S.sse = 'reconnecting';
        }
        updateStatus();
      };
      const parse = (ev) => {
        try {
          return JSON.parse(ev.data);
        } catch (_) {
          return null;
        }
      };
      es.addEventListener('snapshot', (ev) => {
        if (S.es !== es) return;
        const d = parse(ev);
        if (d && d.key != null) onSnapshot(d);
      });
      es.addEventListener('gone', (ev) => {
        if (S.es !== es) return;
        const d = parse(ev);
        if (d && d.key != null) onGone(d.key);
      });
      es.addEventListener('summary', (ev) => {
        if (S.es !== es) return;
        const d = parse(ev);
        if (!d) return;
        if (S.sse !== 'open') {
          S.esOpened = true;
          S.sse = 'open';
          updateStatus();
        }
        if (d.revision !== S.revision) {
          S.revision = d.revision;
          if (Date.now() - S.lastListAt > 200) fetchList();
        }
      });
    }

    function onSnapshot(d) {
      const events = Array.isArray(d.events) ? d.events : [];
      if (S.detail && S.detail.key === d.key && S.detail.actor) {
        const a = S.detail.actor;
        if ('value' in d) a.value = d.value;
        if (d.status != null) a.status = d.status;
        S.detail.gone = false;
        S.events = mergeEvents(S.events, events);
        const last = S.events[S.events.length - 1];
        if (last) a.lastEvent = last;
        els.detailError.hidden = true;
        renderDetailState();
        renderEvents();
        applyActive();
      }
      const r = S.rows.get(d.key);
      if (r && r.el.isConnected) {
        const last = events.length ? events[events.length - 1] : r.actor.lastEvent;
        rowFor(Object.assign({}, r.actor, { value: 'value' in d ? d.value : r.actor.value, status: d.status != null ? d.status : r.actor.status, lastEvent: last || null }), true);
      }
    }

    function onGone(key) {
      if (S.detail && S.detail.key === key) {
        S.detail.gone = true;
        if (S.detail.actor) S.detail.actor.status = 'stopped';
        renderDetailState();
        showDetailError('this actor has stopped');
      }
      const r = S.rows.get(key);
      if (r) rowFor(Object.assign({}, r.actor, { status: 'stopped', gone: true }), false);
    }

    // ---- wiring

    els.filter.addEventListener('input', () => {
      clearTimeout(S.filterTimer);
      S.filterTimer = setTimeout(() => {
        const q = els.filter.value.trim();
        if (q === S.q) return;
        S.q = q;
        S.offset = 0;
        els.list.scrollTop = 0;
        fetchList();
      }, FILTER_DEBOUNCE_MS);
    });
    els.filter.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && els.filter.value) {
        els.filter.value = '';
        els.filter.dispatchEvent(new Event('input'));
      }
    });
    els.prev.addEventListener('click', () => gotoOffset(S.offset - PAGE_SIZE));
    els.next.addEventListener('click', () => gotoOffset(S.offset + PAGE_SIZE));
    els.counts.addEventListener('click', (ev) => {
      const b = ev.target instanceof Element ? ev.target.closest('.proc[data-process]') : null;
      if (!b) return;
      const p = b.getAttribute('data-process') || '';
      els.filter.value = els.filter.value.trim() === p ? '' : p;
      els.filter.dispatchEvent(new Event('input'));
    });
    els.list.addEventListener('click', (ev) => {
      const row = ev.target instanceof Element ? ev.target.closest('.actor[data-key]') : null;
      if (row) select(row.getAttribute('data-key'));
    });
    els.list.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
      const rows = Array.from(els.list.querySelectorAll('.actor[data-key]'));
      if (!rows.length) return;
      ev.preventDefault();
      const i = rows.findIndex((r) => r.getAttribute('data-key') === S.selected);
      const j = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + (ev.key === 'ArrowDown' ? 1 : -1)));
      select(rows[j].getAttribute('data-key'));
      rows[j].scrollIntoView({ block: 'nearest' });
    });
    els.chartZoom.addEventListener('click', () => {
      S.chartFit = !S.chartFit;
      fitChart();
    });
    window.addEventListener('hashchange', () => {
      const k = keyFromHash();
      if (k && k !== S.selected) select(k);
    });
    if (typeof ResizeObserver !== 'undefined') new ResizeObserver(() => fitChart()).observe(els.chart);
    else window.addEventListener('resize', fitChart);

    setInterval(() => {
      if (document.hidden) return;
      const age = Date.now() - S.lastListAt;
      if (S.auth && age < 5000) return; // after a 401, ask less often
      if (age >= POLL_MS - 100) fetchList();
    }, POLL_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) fetchList();
    });

    const initial = keyFromHash();
    if (initial) select(initial);
    else openStream('');
    fetchList();
    updateStatus();
  }

  // ---------------------------------------------------------------- start

  if (typeof document !== 'undefined' && typeof window !== 'undefined') {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
    else boot();
  }
  // For tests under Node (the browser has no `module`).
  if (typeof module === 'object' && module && module.exports) {
    module.exports = { stateText, activePaths, clock, hashOf, modelOf, resolveTarget, initialOf, collectTransitions, buildElkGraph, layoutDefinition, probeMinSize };
  }
})();
