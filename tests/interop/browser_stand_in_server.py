#!/usr/bin/env python3
"""A stand-in for examples/echo_server, on Python websockets, for checking
browser_test.py itself.

Behaves as the echo server does for the browser test: serves a small HTML
echo page at GET /, echoes WebSocket messages on any path (permessage-deflate
on), prints "listening on 127.0.0.1:PORT", and exits 0 on SIGINT or SIGTERM
(or after --lifetime seconds, so that it cannot be left running).
"""

import argparse
import asyncio
import http
import signal
import sys

import websockets

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>echo (stand-in)</title></head>
<body>
<h1>WebSocket echo (stand-in)</h1>
<p id="status">connecting</p>
<form id="form"><input id="text" size="40"> <button>Send</button></form>
<pre id="log"></pre>
<script>
const ws = new WebSocket(location.href.replace(/^http/, "ws"));
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
ws.onopen = () => { document.getElementById("status").textContent = "open: " + ws.extensions; };
ws.onmessage = (event) => log("< " + event.data);
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value);
  log("> " + input.value);
  input.value = "";
};
ws.onclose = (event) => { document.getElementById("status").textContent = "closed " + event.code; };
</script>
</body></html>
"""


async def echo(websocket, path=None):
    try:
        async for message in websocket:
            await websocket.send(message)
    except websockets.ConnectionClosed:
        pass


async def serve_page(path, request_headers):
    # A WebSocket upgrade goes on to the handshake; a plain GET gets the page.
    if "websocket" in request_headers.get("Upgrade", "").lower():
        return None
    if path.split("?")[0] == "/":
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        return http.HTTPStatus.OK, headers, PAGE
    return http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"not found\n"


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = parser.parse_args()

    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)

    async with websockets.serve(echo, "127.0.0.1", args.port, process_request=serve_page,
                                compression=None if args.no_deflate else "deflate",
                                max_size=16 * 1024 * 1024) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        try:
            await asyncio.wait_for(stop, args.lifetime)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
