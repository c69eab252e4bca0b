// A Node `ws` peer for interoperability tests.
//
//   node node_peer.js server [--no-deflate] [--cert FILE --key FILE]
//       echoes every message (text as text, binary as binary); prints its
//       port on the first line of stdout; exits after 60 s at most.
//   node node_peer.js client URL [--no-deflate] [--ca FILE] [--expect-deflate yes|no]
//       sends text and binary messages up to 16 MiB, and a fragmented one,
//       checks each echo; exits 0 when all came back, 1 otherwise.
//
// Exits 77 (a skipped test) when the `ws` package cannot be loaded.
"use strict";

let ws;
try {
  ws = require("ws");
} catch (e) {
  console.error("node_peer: the ws package is not installed: " + e.message);
  process.exit(77);
}
const fs = require("fs");
const https = require("https");

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const deflate = !args.includes("--no-deflate");
setTimeout(() => { console.error("node_peer: timed out"); process.exit(3); }, 60000).unref();

function pattern(size, text) {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = text ? 97 + ((i * 7 + Math.floor(i / 26)) % 26) : (i * 31 + Math.floor(i / 256)) & 0xff;
  return text ? b.toString("latin1") : b;
}

if (args[0] === "server") {
  const cert = option("--cert");
  let server;
  const options = { perMessageDeflate: deflate, maxPayload: 64 * 1024 * 1024 };
  if (cert) {
    const web = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(option("--key")) });
    server = new ws.WebSocketServer({ server: web, ...options });
    web.listen(0, "127.0.0.1", () => console.log(web.address().port));
  } else {
    server = new ws.WebSocketServer({ host: "127.0.0.1", port: 0, ...options });
    server.on("listening", () => console.log(server.address().port));
  }
  server.on("connection", (socket) => {
    socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
} else if (args[0] === "client") {
  const url = args[1];
  const ca = option("--ca");
  const expect = option("--expect-deflate");
  const socket = new ws.WebSocket(url, {
    perMessageDeflate: deflate,
    maxPayload: 64 * 1024 * 1024,
    ca: ca ? fs.readFileSync(ca) : undefined,
  });
  const messages = [];
  for (const text of [true, false]) {
    for (const size of [0, 1, 125, 126, 65536, 1024 * 1024, 16 * 1024 * 1024]) messages.push({ text, data: pattern(size, text) });
  }
  let index = 0;
  const sendNext = () => {
    const m = messages[index];
    if (index === messages.length) {
      // One more, sent as three fragments.
      socket.send("frag-", { fin: false });
      socket.send("ment", { fin: false });
      socket.send("ed", { fin: true });
      return;
    }
    socket.send(m.data, { binary: !m.text });
  };
  socket.on("open", () => {
    const negotiated = socket.extensions.includes("permessage-deflate");
    console.error("node_peer: connected, extensions: " + JSON.stringify(socket.extensions));
    if (expect && (expect === "yes") !== negotiated) {
      console.error("node_peer: permessage-deflate " + (negotiated ? "agreed" : "not agreed"));
      process.exit(1);
    }
    sendNext();
  });
  socket.on("message", (data, isBinary) => {
    if (index === messages.length) {
      if (isBinary || data.toString() !== "frag-mented") { console.error("node_peer: fragmented echo differs"); process.exit(1); }
      socket.close(1000, "done");
      return;
    }
    const m = messages[index];
    const same = m.text ? !isBinary && data.toString("latin1") === m.data : isBinary && Buffer.compare(data, m.data) === 0;
    if (!same) { console.error("node_peer: echo " + index + " differs"); process.exit(1); }
    index++;
    sendNext();
  });
  socket.on("close", (code) => {
    if (code === 1000 && index === messages.length) { console.log(messages.length + 1 + " messages echoed"); process.exit(0); }
    console.error("node_peer: closed early with " + code);
    process.exit(1);
  });
  socket.on("error", (e) => { console.error("node_peer: " + e.message); process.exit(1); });
} else {
  console.error("usage: node node_peer.js server|client ...");
  process.exit(2);
}
