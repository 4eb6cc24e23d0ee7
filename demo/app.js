// demo/app.js — a tiny "flash sale shop" to put flashgate in front of (README quick start).
// Node 20, no packages. Listens on 127.0.0.1:$PORT (3000).
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);
const products = Array.from({ length: 12 }, (_, i) => ({
  id: i + 1,
  name: `Deal #${i + 1}`,
  price: 9.99 + i * 5,
  stock: 100 - i * 7,
}));
let nextOrder = 1;

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
  if (req.method === 'GET' && url.pathname === '/') {
    const rows = products.map((p) => `<li>${p.name}: $${p.price.toFixed(2)} (${p.stock} left)</li>`).join('');
    return send(res, 200, 'text/html; charset=utf-8',
      `<!doctype html><title>Flash sale</title><h1>Flash sale</h1><ul>${rows}</ul>` +
      `<p>Served by the demo app through flashgate. Request id: ${req.headers['x-request-id'] || '-'}</p>\n`);
  }
  if (req.method === 'GET' && url.pathname === '/api/products') {
    return send(res, 200, 'application/json', JSON.stringify(products) + '\n',
      { 'Cache-Control': 'public, max-age=5' });
  }
  const m = url.pathname.match(/^\/api\/products\/(\d+)$/);
  if (req.method === 'GET' && m) {
    const p = products.find((x) => x.id === Number(m[1]));
    return p ? send(res, 200, 'application/json', JSON.stringify(p) + '\n', { 'Cache-Control': 'public, max-age=5' })
             : send(res, 404, 'application/json', '{"error":"no such product"}\n');
  }
  if (req.method === 'POST' && url.pathname === '/api/orders') {
    let body = '';
    req.on('data', (c) => { body += c; if (body.length > 1e6) req.destroy(); });
    req.on('end', () => {
      let order;
      try { order = JSON.parse(body || '{}'); } catch (e) {
        return send(res, 400, 'application/json', '{"error":"body is not JSON"}\n');
      }
      const id = nextOrder++;
      send(res, 201, 'application/json', JSON.stringify({ id, order }) + '\n', { Location: `/api/orders/${id}` });
    });
    return;
  }
  send(res, 404, 'text/plain', 'not found\n');
});

// Node closes idle keep-alive connections after keepAliveTimeout (5 s by default).
// flashgate's upstream keepalive_timeout (4 s in conf/flashgate.conf) stays below it, so
// flashgate never reuses a connection the app is about to close.
server.keepAliveTimeout = 5000;
server.headersTimeout = 6000;
server.listen(port, '127.0.0.1', () => console.log(`demo shop on http://127.0.0.1:${port}/`));
