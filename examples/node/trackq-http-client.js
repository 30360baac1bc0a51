#!/usr/bin/env node
// trackq over HTTP on its Unix socket, for Node.js (18+, no dependencies): the Track API's own
// call, `POST /api/track`, with `http.request({ socketPath })`.
//
//   node trackq-http-client.js '{"event_name":"signed_in","user_id":"u1"}' ...
//
// Each argument is one request (an object, or an array for one atomic batch), sent in order on
// keep-alive connections; each answer body is printed. Socket: $TRACKQ_SOCKET, else
// /run/trackq/trackq.sock. Exit 0 only if every request was accepted (200), 1 if any was
// refused, 2 if the daemon is unreachable.
//
// As a module:
//   const { track } = require("./trackq-http-client.js");
//   const { status, answer } = await track({ event_name: "signed_in", user_id: "u1" });
//   // status 200, answer { success: true, message: "Event(s) tracked successfully", response_id, accepted: 1 }
"use strict";
const http = require("http");

const DEFAULT_SOCKET = process.env.TRACKQ_SOCKET || "/run/trackq/trackq.sock";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** POSTs one body (JSON text, or a value to serialise); resolves with { status, answer }. */
function track(body, socketPath = DEFAULT_SOCKET, { timeoutMs = 30000 } = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        socketPath, agent, method: "POST", path: "/api/track", timeout: timeoutMs,
        // A Content-Length, not chunked: the daemon reserves room for the body before reading it.
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) },
      },
      (response) => {
        let data = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => (data += chunk));
        response.on("end", () => {
          try {
            resolve({ status: response.statusCode, answer: JSON.parse(data) });
          } catch (cause) {
            reject(Object.assign(new Error(`trackq sent something that is not an answer: ${data}`, { cause }), { code: "EBADANSWER" }));
          }
        });
      });
    request.on("timeout", () => request.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })));
    request.on("error", (cause) =>
      reject(Object.assign(new Error(`cannot reach trackq at ${socketPath}: ${cause.code || cause.message}`, { cause }), { code: cause.code })));
    request.end(text);
  });
}

module.exports = { track, DEFAULT_SOCKET };

if (require.main === module) {
  (async () => {
    let refused = false;
    for (const arg of process.argv.slice(2)) {
      const { status, answer } = await track(arg);
      console.log(JSON.stringify(answer));
      if (status !== 200) refused = true;
    }
    return refused ? 1 : 0;
  })().then(
    (code) => { agent.destroy(); process.exitCode = code; },
    (error) => { agent.destroy(); console.error(`trackq-http-client: ${error.message}`); process.exitCode = 2; });
}
