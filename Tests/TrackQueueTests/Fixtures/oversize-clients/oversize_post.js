#!/usr/bin/env node
// POST an oversize JSON body the way an app would, with Node's http module, and say what
// came back.
//
// Usage: node oversize_post.js URL [SIZE] [--small]
//   URL     e.g. http://127.0.0.1:PORT/api/track
//   SIZE    body size in bytes (default 2250000)
//   --small send a small valid event instead (expect status 200)
//
// Prints one line: `status <code>` (exit 0) if a response arrived (even if an error such
// as EPIPE or ECONNRESET follows it), else `error <description>` (exit 1). Gives up after
// 10 seconds. Built-in modules only; runs on Node 12 and later.
'use strict';
const http = require('http');

const TIMEOUT_MS = 10000;
const DEFAULT_SIZE = 2250000;

function bodyOf(size) {
  const head = Buffer.from('{"event_name":"oversize_client","user_id":"u1","properties":{"padding":"');
  const tail = Buffer.from('"}}');
  const pad = Buffer.alloc(Math.max(size - head.length - tail.length, 0), 'x');
  return Buffer.concat([head, pad, tail]);
}

let done = false;
function finish(line, code) {
  if (done) return;
  done = true;
  process.stdout.write(line.split(/\s+/).join(' ') + '\n', () => process.exit(code));
}

const args = process.argv.slice(2);
if (args.length < 1) {
  process.stderr.write('usage: node oversize_post.js URL [SIZE] [--small]\n');
  process.exit(2);
}
const url = new URL(args[0]);
const rest = args.slice(1);
const small = rest.includes('--small');
const sizes = rest.filter((a) => a !== '--small');
const size = sizes.length ? parseInt(sizes[0], 10) : DEFAULT_SIZE;
const body = small ? Buffer.from('{"event_name":"oversize_client_small","user_id":"u1"}') : bodyOf(size);

const timer = setTimeout(() => {
  finish(`error timeout: no answer within ${TIMEOUT_MS / 1000}s`, 1);
  req.destroy();
}, TIMEOUT_MS);

const req = http.request({
  method: 'POST',
  hostname: url.hostname,
  port: url.port || 80,
  path: url.pathname + url.search,
  agent: false, // one fresh connection for this one request
  headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
});
req.on('response', (res) => {
  clearTimeout(timer);
  res.resume();
  finish(`status ${res.statusCode}`, 0);
});
req.on('error', (err) => {
  clearTimeout(timer);
  finish(`error ${err.code || err.name} ${err.message}`, 1);
});
req.write(body);
req.end();
