#!/usr/bin/env python3
"""Interoperability tests of examples/echo_server and examples/client.

usage: run_echo_tests.py CASE --bin DIR [--node NODE] [--node-modules DIR]

CASE is one of
  echo-ws, echo-ws-no-deflate, echo-wss, echo-wss-no-deflate
      examples/client against examples/echo_server: text and binary from 0 B
      to 16 MiB, a fragmented message, deflate agreed or not as expected;
  refusals      bad upgrades and plain requests over real TCP, then an echo;
  shutdown      SIGTERM closes every client with 1001 and exits 0;
  python-client, python-client-no-deflate, python-client-wss
      Python websockets as the client of echo_server;
  python-server, python-server-no-deflate
      examples/client against a Python websockets echo server;
  node-client, node-client-no-deflate, node-client-wss
      Node ws as the client of echo_server;
  node-server, node-server-no-deflate
      examples/client against a Node ws echo server.

Servers listen on port 0 and print the port they got; every process runs
under a timeout and is killed by its PID at the end. Exits 0 on success,
77 when a peer (Python websockets, node, ws) is missing, 1 otherwise.
"""

import argparse
import asyncio
import os
import pathlib
import signal
import socket
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # common.py, whatever the working directory
from common import make_certificates  # noqa: E402

TIMEOUT = 120
SKIP = 77
SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024]


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


class Server:
    """A server process that prints its port (or "listening on HOST:PORT")."""

    def __init__(self, command, env=None):
        # The log goes to a file: a pipe nobody reads could fill and stall it.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        first = self.process.stdout.readline().strip()
        if first.startswith("listening on "):
            first = first.rsplit(":", 1)[1]
        if not first.isdigit():
            code = self.process.poll()
            self.kill()
            if code == SKIP:
                raise SystemExit(SKIP)
            raise Failure(f"{command[0]} did not print its port (got {first!r}, exit {code})")
        self.port = int(first)

    def stop(self, sig=signal.SIGINT):
        """Signals the server and returns (exit code, stderr)."""
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("the server did not exit after the signal")
        return self.process.returncode, self.read_log()

    def read_log(self):
        self.log.seek(0)
        return self.log.read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.process.stdout.close()


def echo_server(args, *extra):
    return Server([str(args.bin / "echo_server"), "--port", "0", *extra])


def run_client(args, *client_args):
    result = subprocess.run([str(args.bin / "client"), "--timeout", "100", *client_args],
                            capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0:
        raise Failure(f"client {' '.join(client_args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def client_echo_cases(args, uri, deflate, ca=None, max_size=SIZES[-1]):
    """examples/client sends every size up to max_size, text and binary, and a fragmented message."""
    base = (["--ca", str(ca)] if ca else []) + ([] if deflate else ["--no-deflate"])
    base += ["--expect-deflate", "yes" if deflate else "no"]
    for size in (size for size in SIZES if size <= max_size):
        for binary in ([], ["--binary"]):
            run_client(args, *base, "--size", str(size), *binary, "--count", "2", uri)
    run_client(args, *base, "--size", "100000", "--fragment", "1000", "--count", "3", uri)
    run_client(args, *base, "--send", "caf\u00e9 \u2615", "--count", "5", uri)


def case_echo(args, tls, deflate):
    with tempfile.TemporaryDirectory() as directory:
        extra, ca = [], None
        if tls:
            ca, cert, key = make_certificates(directory, TIMEOUT)
            extra = ["--tls", str(cert), str(key)]
        server = echo_server(args, *extra)
        try:
            scheme = "wss" if tls else "ws"
            client_echo_cases(args, f"{scheme}://localhost:{server.port}/", deflate, ca)
            # A server without deflate agrees to none, whatever is offered.
            code, log = server.stop()
            check(code == 0, f"echo_server exited {code}")
            check(" open /" in log and " close 1000" in log, f"open/close not logged: {log[-500:]}")
        finally:
            server.kill()
        if deflate:
            server = echo_server(args, "--no-deflate", *extra)
            try:
                scheme = "wss" if tls else "ws"
                run_client(args, *(["--ca", str(ca)] if ca else []), "--expect-deflate", "no",
                           "--size", "70000", f"{scheme}://localhost:{server.port}/")
            finally:
                server.kill()


def http_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def upgrade_request(path="/", version="13", key="dGhlIHNhbXBsZSBub25jZQ=="):
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Version: {version}"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return "\r\n".join(lines) + "\r\n\r\n"


def case_refusals(args):
    server = echo_server(args)
    try:
        status, _, _ = http_exchange(server.port, upgrade_request(key=None))
        check(status == 400, f"missing key: {status}")
        status, headers, _ = http_exchange(server.port, upgrade_request(version="8"))
        check(status == 426, f"version 8: {status}")
        check(headers.get("sec-websocket-version") == "13", f"426 without Sec-WebSocket-Version: 13: {headers}")
        status, _, _ = http_exchange(server.port, "GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        check(status == 404, f"GET /other: {status}")
        status, headers, body = http_exchange(server.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        check(status == 200 and headers.get("content-type", "").startswith("text/html"), f"GET /: {status} {headers}")
        check(b"new WebSocket(" in body, "the page opens no WebSocket")
        # The server still serves.
        run_client(args, "--send", "still here", "--count", "2", f"ws://127.0.0.1:{server.port}/")
        code, log = server.stop()
        check(code == 0, f"echo_server exited {code}")
        check("-> 404" in log and "-> 200" in log, "plain requests not logged")
    finally:
        server.kill()


def require_websockets():
    try:
        import websockets  # noqa: F401
    except ImportError:
        print("Python websockets is not installed: skipped")
        raise SystemExit(SKIP)


def case_shutdown(args):
    require_websockets()
    import websockets

    server = echo_server(args, "--threads", "2")
    try:
        async def session():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hello")
                check(await ws.recv() == "hello", "no echo")
                server.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(ws.recv(), 30)
                    raise Failure("a message instead of the close")
                except websockets.ConnectionClosed as closed:
                    check(closed.rcvd is not None and closed.rcvd.code == 1001, f"closed with {closed.rcvd}")
        asyncio.run(asyncio.wait_for(session(), TIMEOUT))
        server.process.wait(timeout=30)
        err = server.read_log()
        check(server.process.returncode == 0, f"echo_server exited {server.process.returncode}: {err}")
        check(" close 1001" in err, f"close 1001 not logged: {err[-500:]}")
    finally:
        server.kill()


def pattern(size, text):
    if text:
        return "".join(chr(97 + (i * 7 + i // 26) % 26) for i in range(size)) if size < 4096 else \
            ("abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[:size]
    return bytes((i * 31 + i // 256) & 0xff for i in range(size)) if size < 4096 else \
        (bytes(range(256)) * (size // 256 + 1))[:size]


def case_python_client(args, tls, deflate):
    require_websockets()
    import ssl
    import websockets

    with tempfile.TemporaryDirectory() as directory:
        extra, context = [], None
        if tls:
            ca, cert, key = make_certificates(directory, TIMEOUT)
            extra = ["--tls", str(cert), str(key)]
            context = ssl.create_default_context(cafile=str(ca))
        server = echo_server(args, *extra)
        try:
            scheme = "wss" if tls else "ws"

            async def session():
                async with websockets.connect(f"{scheme}://localhost:{server.port}/", ssl=context,
                                              compression="deflate" if deflate else None, max_size=None) as ws:
                    names = [e.name for e in ws.extensions]
                    check(("permessage-deflate" in names) == deflate, f"extensions {names}")
                    for text in (True, False):
                        for size in SIZES:
                            payload = pattern(size, text)
                            await ws.send(payload)
                            check(await ws.recv() == payload, f"echo of {size} bytes differs")
                    await ws.send(["frag", "men", "ted"])  # one message, three frames
                    check(await ws.recv() == "fragmented", "fragmented echo differs")
                    await ws.send([b"\x00\x01", b"\x02"])
                    check(await ws.recv() == b"\x00\x01\x02", "fragmented binary echo differs")
                    pong = await ws.ping(b"ping?")
                    await asyncio.wait_for(pong, 30)
                    await ws.close(1000, "bye")

            asyncio.run(asyncio.wait_for(session(), TIMEOUT))
            code, log = server.stop()
            check(code == 0, f"echo_server exited {code}")
            check(" close 1000 bye" in log, f"close not logged: {log[-500:]}")
        finally:
            server.kill()


def case_python_server(args, deflate):
    require_websockets()
    extra = [] if deflate else ["--no-compression"]
    server = Server([sys.executable, str(HERE / "python_echo_server.py"), "--lifetime", str(TIMEOUT), *extra])
    try:
        # The Python server keeps websockets' default message size limit, 1 MiB.
        client_echo_cases(args, f"ws://127.0.0.1:{server.port}/", deflate, max_size=1024 * 1024)
    finally:
        server.kill()


def node_environment(args):
    if not args.node or shutil.which(args.node) is None:
        print(f"node is not installed ({args.node or 'none given'}): skipped")
        raise SystemExit(SKIP)
    env = dict(os.environ)
    if args.node_modules:
        env["NODE_PATH"] = str(args.node_modules)
    probe = subprocess.run([args.node, "-e", "require('ws')"], env=env, capture_output=True, timeout=TIMEOUT)
    if probe.returncode != 0:
        print("the node ws package is not installed: skipped")
        raise SystemExit(SKIP)
    return env


def case_node_client(args, tls, deflate):
    env = node_environment(args)
    with tempfile.TemporaryDirectory() as directory:
        extra, client_extra = [], []
        if tls:
            ca, cert, key = make_certificates(directory, TIMEOUT)
            extra = ["--tls", str(cert), str(key)]
            client_extra = ["--ca", str(ca)]
        server = echo_server(args, *extra)
        try:
            scheme = "wss" if tls else "ws"
            result = subprocess.run([args.node, str(HERE / "node_peer.js"), "client", f"{scheme}://localhost:{server.port}/",
                                     "--expect-deflate", "yes" if deflate else "no",
                                     *client_extra, *([] if deflate else ["--no-deflate"])],
                                    env=env, capture_output=True, text=True, timeout=TIMEOUT)
            check(result.returncode == 0, f"node client failed ({result.returncode}): {result.stderr.strip()}")
            code, log = server.stop()
            check(code == 0, f"echo_server exited {code}")
            check(" close 1000 done" in log, f"close not logged: {log[-500:]}")
        finally:
            server.kill()


def case_node_server(args, deflate):
    env = node_environment(args)
    server = Server([args.node, str(HERE / "node_peer.js"), "server", *([] if deflate else ["--no-deflate"])], env=env)
    try:
        client_echo_cases(args, f"ws://127.0.0.1:{server.port}/", deflate)
    finally:
        server.kill()


CASES = {
    "echo-ws": lambda a: case_echo(a, False, True),
    "echo-ws-no-deflate": lambda a: case_echo(a, False, False),
    "echo-wss": lambda a: case_echo(a, True, True),
    "echo-wss-no-deflate": lambda a: case_echo(a, True, False),
    "refusals": case_refusals,
    "shutdown": case_shutdown,
    "python-client": lambda a: case_python_client(a, False, True),
    "python-client-no-deflate": lambda a: case_python_client(a, False, False),
    "python-client-wss": lambda a: case_python_client(a, True, True),
    "python-server": lambda a: case_python_server(a, True),
    "python-server-no-deflate": lambda a: case_python_server(a, False),
    "node-client": lambda a: case_node_client(a, False, True),
    "node-client-no-deflate": lambda a: case_node_client(a, False, False),
    "node-client-wss": lambda a: case_node_client(a, True, True),
    "node-server": lambda a: case_node_server(a, True),
    "node-server-no-deflate": lambda a: case_node_server(a, False),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--bin", type=pathlib.Path, required=True, help="the directory of echo_server and client")
    parser.add_argument("--node", default="")
    parser.add_argument("--node-modules", default="")
    args = parser.parse_args()
    try:
        CASES[args.case](args)
    except Failure as failure:
        print(f"{args.case}: FAILED: {failure}")
        print("0 passed, 1 failed")
        return 1
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
