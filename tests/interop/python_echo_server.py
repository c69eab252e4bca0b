#!/usr/bin/env python3
"""A WebSocket echo server on Python websockets, for interoperability tests.

Listens on 127.0.0.1 on a port the system chooses (or --port), prints that
port on the first line of stdout, echoes every message, and exits after
--lifetime seconds (30 unless told) so a test that forgets it cannot leave it
running. With --cert and --key it serves wss:// instead of ws://.
"""

import argparse
import asyncio
import ssl
import sys

import websockets


async def echo(websocket, path=None):
    try:
        async for message in websocket:
            await websocket.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=30.0)
    parser.add_argument("--cert", help="PEM certificate chain (serve wss://)")
    parser.add_argument("--key", help="PEM private key of the certificate")
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args()

    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)

    compression = None if args.no_compression else "deflate"
    async with websockets.serve(echo, "127.0.0.1", args.port, ssl=tls, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        try:
            await asyncio.wait_for(asyncio.Event().wait(), args.lifetime)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
