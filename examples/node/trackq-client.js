#!/usr/bin/env node
// The smallest trackq client for Node.js (18+, no dependencies): write JSON lines to the
// socket, read one answer per line.
//
//   node trackq-client.js '{"event_name":"signed_in","user_id":"u1"}' ...
//
// Socket: $TRACKQ_SOCKET, else /run/trackq/trackq.sock. Prints each answer line; exit 0 only if
// every line was accepted, 1 if any was refused, 2 if the daemon is unreachable (or the
// connection ended before every answer came: those lines' fate is unknown).
//
// As a module:
//   const { send } = require("./trackq-client.js");
//   const [answer] = await send([{ event_name: "signed_in", user_id: "u1" }]);
//   // answer: { ok: true, accepted: 1, first_id: 1, last_id: 1 }
"use strict";
const net = require("net");

const DEFAULT_SOCKET = process.env.TRACKQ_SOCKET || "/run/trackq/trackq.sock";

/** One line of JSON text: an object or array is serialised; a string is taken as JSON text. */
function toLine(event) {
  // A line feed is only ever whitespace in JSON: as a space, the text stays one line.
  const text = typeof event === "string" ? event : JSON.stringify(event);
  if (text === undefined || text.trim() === "") throw new TypeError("an event must not be blank");
  return text.replace(/[\r\n]/g, " ") + "\n";
}

/**
 * Sends each event (an object, an array of objects for one atomic batch, or a string of JSON
 * text) on one connection; resolves with the answers, one per event, in order. Rejects with
 * an Error whose `code` is "ECONNECT" when the socket cannot be reached, "ECLOSED" when the
 * connection ended early (`answers` holds those that came), "ETIMEDOUT" after `timeoutMs`.
 */
function send(events, path = DEFAULT_SOCKET, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const lines = events.map(toLine);
    if (lines.length === 0) return resolve([]);
    const answers = [];
    let pending = "";
    let connected = false;
    let settled = false;
    const fail = (code, message, cause) => {
      if (settled) return;
      settled = true;
      const error = new Error(message, { cause });
      error.code = code;
      error.answers = answers;
      socket.destroy();
      reject(error);
    };
    const socket = net.createConnection({ path }, () => {
      connected = true;
      // Node buffers what the socket cannot take yet and keeps reading answers meanwhile, so
      // any number of lines flows without a deadlock.
      socket.end(lines.join(""));
    });
    socket.setEncoding("utf8");
    socket.setTimeout(timeoutMs, () => fail("ETIMEDOUT", `no answer from trackq at ${path} within ${timeoutMs} ms`));
    socket.on("data", (chunk) => {
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).replace(/\r$/, "");
        pending = pending.slice(newline + 1);
        if (line === "") continue;
        try {
          answers.push(JSON.parse(line));
        } catch (cause) {
          return fail("EBADANSWER", `trackq sent something that is not an answer: ${line}`, cause);
        }
        if (answers.length === lines.length && !settled) {
          settled = true;
          socket.destroy();
          resolve(answers);
        }
      }
    });
    socket.on("error", (cause) => {
      if (connected) fail("ECLOSED", `the connection to trackq at ${path} failed: ${cause.message}`, cause);
      else fail("ECONNECT", `cannot connect to trackq at ${path}: ${cause.code || cause.message}`, cause);
    });
    socket.on("close", () =>
      fail("ECLOSED", `the connection to ${path} ended after ${answers.length} of ${lines.length} answers; the other lines' fate is unknown`));
  });
}

module.exports = { send, DEFAULT_SOCKET };

if (require.main === module) {
  const args = process.argv.slice(2);
  const blank = args.findIndex((arg) => arg.trim() === "");
  if (blank >= 0) {
    console.error(`trackq-client: argument ${blank + 1} is blank`);
    process.exit(1);
  }
  // Arguments go as they are (re-serialising could round big integers); the daemon judges them.
  send(args).then(
    (answers) => {
      for (const answer of answers) console.log(JSON.stringify(answer));
      process.exitCode = answers.every((answer) => answer.ok === true) ? 0 : 1;
    },
    (error) => {
      for (const answer of error.answers || []) console.log(JSON.stringify(answer));
      console.error(`trackq-client: ${error.message}`);
      process.exitCode = 2;
    });
}
