/**
 * `/api/docs`: a self-contained page that reads `/api/openapi.json` with a token the reader
 * types in and lists the operations. No CDN, no external asset: hubs often run offline.
 */
import { createHash } from 'node:crypto';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { validationHook } from './problem.ts';

const STYLE = `
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 70rem; padding: 1rem 2rem; color: #1d232a; }
form { display: flex; gap: .5rem; margin: 1rem 0; }
input { flex: 1; font: inherit; padding: .35rem .5rem; }
button { font: inherit; padding: .35rem .8rem; }
#status { color: #8a3b12; }
details.op { border: 1px solid #d6dbe0; border-radius: 6px; margin: .4rem 0; padding: .3rem .7rem; }
summary { cursor: pointer; }
summary > * { margin-right: .6rem; }
.method { display: inline-block; min-width: 4.2rem; font-weight: 600; text-transform: uppercase; }
.get { color: #0b6b3a; } .post { color: #1f4fa8; } .delete { color: #a3261b; } .put, .patch { color: #80580a; }
.summary { color: #4a545e; }
pre { background: #f4f6f8; padding: .6rem; overflow-x: auto; font-size: 13px; }
table { border-collapse: collapse; }
td, th { border-bottom: 1px solid #e3e7eb; padding: .2rem .6rem; text-align: left; vertical-align: top; }
.auth, .status { font-weight: 600; }
`;

// Plain ES5 without template literals: it is embedded in a TypeScript template string.
// Everything from the document is written with textContent, never as HTML.
const SCRIPT = `
(function () {
  var KEY = 'audiencehub.token';
  var form = document.getElementById('auth');
  var input = document.getElementById('token');
  var status = document.getElementById('status');
  var out = document.getElementById('out');

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function typeText(s, depth) {
    depth = depth || 0;
    if (!s || typeof s !== 'object') return 'any';
    if (s.$ref) return s.$ref.split('/').pop();
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map(function (v) { return JSON.stringify(v); }).join(' | ');
    var alternatives = s.anyOf || s.oneOf;
    if (alternatives) return alternatives.map(function (a) { return typeText(a, depth); }).join(' | ');
    if (s.allOf) return s.allOf.map(function (a) { return typeText(a, depth); }).join(' & ');
    var types = Array.isArray(s.type) ? s.type : [s.type];
    return types.map(function (t) {
      if (t === 'array') {
        var item = typeText(s.items, depth);
        var union = item.charAt(0) !== '{' && item.indexOf(' | ') >= 0;
        return (union ? '(' + item + ')' : item) + '[]';
      }
      if (t === 'object' || (!t && s.properties)) return objectText(s, depth);
      if (!t) return 'any';
      return s.format && t !== 'null' ? t + '<' + s.format + '>' : t;
    }).join(' | ');
  }

  function objectText(s, depth) {
    var props = s.properties || {};
    var required = s.required || [];
    var pad = '  '.repeat(depth);
    var lines = Object.keys(props).map(function (k) {
      var optional = required.indexOf(k) >= 0 ? '' : '?';
      return pad + '  ' + k + optional + ': ' + typeText(props[k], depth + 1);
    });
    if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      lines.push(pad + '  [key: string]: ' + typeText(s.additionalProperties, depth + 1));
    }
    if (lines.length === 0) return 'object';
    return '{\\n' + lines.join('\\n') + '\\n' + pad + '}';
  }

  function content(parent, c) {
    Object.keys(c || {}).forEach(function (type) {
      parent.appendChild(el('pre', null, type + '\\n' + typeText(c[type].schema)));
    });
  }

  function operation(o) {
    var d = el('details', 'op');
    var s = el('summary');
    s.appendChild(el('span', 'method ' + o.method, o.method));
    s.appendChild(el('code', null, o.path));
    if (o.op.summary) s.appendChild(el('span', 'summary', o.op.summary));
    d.appendChild(s);
    if (o.op.description) d.appendChild(el('p', null, o.op.description));
    var schemes = (o.op.security || []).map(function (r) { return Object.keys(r)[0]; });
    schemes = schemes.filter(Boolean);
    d.appendChild(el('p', 'auth', schemes.length ? 'Authentication: ' + schemes.join(' or ') : 'No authentication'));
    var params = o.op.parameters || [];
    if (params.length) {
      d.appendChild(el('h4', null, 'Parameters'));
      var table = el('table');
      var head = el('tr');
      ['Name', 'In', 'Type', 'Required', 'Description'].forEach(function (h) { head.appendChild(el('th', null, h)); });
      table.appendChild(head);
      params.forEach(function (p) {
        var row = el('tr');
        var description = p.description || (p.schema && p.schema.description) || '';
        [p.name, p.in, typeText(p.schema), p.required ? 'yes' : 'no', description].forEach(function (v, i) {
          var cell = el('td');
          cell.appendChild(el(i === 0 || i === 2 ? 'code' : 'span', null, v));
          row.appendChild(cell);
        });
        table.appendChild(row);
      });
      d.appendChild(table);
    }
    if (o.op.requestBody) {
      d.appendChild(el('h4', null, 'Request body'));
      content(d, o.op.requestBody.content);
    }
    d.appendChild(el('h4', null, 'Responses'));
    Object.keys(o.op.responses || {}).forEach(function (code) {
      var r = o.op.responses[code];
      d.appendChild(el('p', 'status', code + ' ' + (r.description || '')));
      content(d, r.content);
    });
    return d;
  }

  function render(doc) {
    out.textContent = '';
    var info = doc.info || {};
    out.appendChild(el('h2', null, info.title + ' ' + info.version));
    if (info.description) out.appendChild(el('p', null, info.description));
    var byTag = {};
    Object.keys(doc.paths || {}).forEach(function (path) {
      ['get', 'post', 'put', 'patch', 'delete'].forEach(function (method) {
        var op = doc.paths[path][method];
        if (!op) return;
        var tag = (op.tags && op.tags[0]) || 'Other';
        (byTag[tag] = byTag[tag] || []).push({ path: path, method: method, op: op });
      });
    });
    Object.keys(byTag).forEach(function (tag) {
      out.appendChild(el('h3', null, tag));
      byTag[tag].forEach(function (o) { out.appendChild(operation(o)); });
    });
    var schemas = (doc.components && doc.components.schemas) || {};
    out.appendChild(el('h3', null, 'Schemas'));
    Object.keys(schemas).sort().forEach(function (name) {
      var d = el('details', 'op');
      var s = el('summary');
      s.appendChild(el('code', null, name));
      d.appendChild(s);
      d.appendChild(el('pre', null, typeText(schemas[name])));
      out.appendChild(d);
    });
  }

  function load() {
    var token = sessionStorage.getItem(KEY);
    out.textContent = '';
    if (!token) { status.textContent = 'Enter an API token to load the API description.'; return; }
    status.textContent = 'Loading…';
    fetch('openapi.json', { headers: { Authorization: 'Bearer ' + token } })
      .then(function (res) {
        return res.json().then(function (body) { return { res: res, body: body }; });
      })
      .then(function (r) {
        if (!r.res.ok) {
          if (r.res.status === 401) sessionStorage.removeItem(KEY);
          status.textContent = (r.body.title || 'Error') + ': ' + (r.body.detail || r.res.status);
          return;
        }
        status.textContent = '';
        render(r.body);
      })
      .catch(function (e) { status.textContent = 'Could not load the API description: ' + e.message; });
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
    input.value = '';
    load();
  });
  document.getElementById('forget').addEventListener('click', function () {
    sessionStorage.removeItem(KEY);
    load();
  });
  load();
})();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only this page's own inline script and style may run, and it may only call this origin. */
const CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>audiencehub API</title>
<style>${STYLE}</style>
</head>
<body>
<h1>audiencehub API</h1>
<p>The management API (<code>/api</code>) and the tracking API (<code>/v1</code>). The token stays in this tab's session storage.</p>
<form id="auth" autocomplete="off">
<input id="token" type="password" placeholder="API token (aht_…)" aria-label="API token">
<button type="submit">Load</button>
<button type="button" id="forget">Forget token</button>
</form>
<p id="status"></p>
<main id="out"></main>
<script>${SCRIPT}</script>
</body>
</html>
`;

const route = createRoute({
  tags: ['Documentation'],
  security: [],
  method: 'get',
  path: '/docs',
  summary: 'This API’s documentation page',
  description:
    'No authentication: the page asks for a token and fetches /api/openapi.json with it.',
  responses: { 200: { description: 'HTML', content: { 'text/html': { schema: z.string() } } } },
});

/** `/api/docs`, public. */
export function docsPageRoutes() {
  return new OpenAPIHono({ defaultHook: validationHook }).openapi(route, (c) => {
    c.header('Content-Security-Policy', CSP);
    c.header('Referrer-Policy', 'no-referrer');
    c.header('X-Content-Type-Options', 'nosniff');
    return c.html(DOCS_PAGE, 200);
  });
}
