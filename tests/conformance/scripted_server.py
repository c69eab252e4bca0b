#!/usr/bin/env python3
"""Client conformance: a scripted raw WebSocket server against the `client`
example in its scripted mode.

    scripted_server.py --client build/examples/client

For each case the script starts the client (`client ws://127.0.0.1:PORT/CASE
--send MSG ...`), takes its connection on a listening socket of its own,
checks the opening handshake and every frame the client sends (RFC 6455
§5.1: a client masks every frame; §5.5.2: it answers pings; §5.5.1: it
echoes a close), and plays the server's part: an echo, or a protocol
violation the client must fail with the right close code (§7.1.7). Then it
checks the client's exit status (0 only when every echo matched) and that it
exited well within the case's time bound (a client that only gave up on its
own timeout fails the case).

Prints one line per case, a table, and ends with `N passed, N failed`.
"""

import argparse
import base64
import os
import random
import socket
import struct
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawws import (  # noqa: E402
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2,
    CaseTimeout, Peer, Runner, accept_key, check, deflate_message,
    describe, inflate_message, parse_extensions, parse_head,
)


class ClientRun:
    """One run of the client against one scripted connection."""

    def __init__(self, suite, d, name, args):
        self.suite, self.d = suite, d
        uri = f"ws://127.0.0.1:{suite.port}/{name}"
        self.command = [suite.client] + args + ["--timeout", str(suite.client_timeout), uri]
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.peer = None
        self.target = "/" + name

    def accept(self):
        self.suite.listener.settimeout(self.d.left("waiting for the client to connect"))
        try:
            sock, _ = self.suite.listener.accept()
        except socket.timeout:
            raise CaseTimeout(f"the client did not connect; {self.stderr()}")
        self.peer = Peer(sock, self.d, random.Random(self.suite.seed ^ zlib.crc32(self.d.name.encode())), masking=False)
        return self.peer

    def stderr(self):
        if self.process.poll() is None:
            return "client still running"
        return f"client stderr: {self.process.stderr.read().decode('utf-8', 'replace').strip()!r}"

    def read_request(self):
        head = self.peer.read_until(b"\r\n\r\n", "waiting for the upgrade request")
        line, fields = parse_head(head)
        return line, fields

    def handshake(self, extensions=None, respond=True):
        """Checks the upgrade request (RFC 6455 §4.1) and answers 101."""
        line, fields = self.read_request()
        check(line == f"GET {self.target} HTTP/1.1", f"request line {line!r}")
        check(fields.get("host") == [f"127.0.0.1:{self.suite.port}"], f"Host {fields.get('host')}")
        check([v.lower() for v in fields.get("upgrade", [])] == ["websocket"], f"Upgrade {fields.get('upgrade')}")
        check(any("upgrade" in [t.strip().lower() for t in v.split(",")] for v in fields.get("connection", [])),
              f"Connection {fields.get('connection')}")
        check(fields.get("sec-websocket-version") == ["13"], f"Sec-WebSocket-Version {fields.get('sec-websocket-version')}")
        keys = fields.get("sec-websocket-key", [])
        check(len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16,
              f"Sec-WebSocket-Key {keys} is not 16 bytes in base64")
        if respond:
            self.respond_101(keys[0], extensions)
        return fields, keys[0]

    def respond_101(self, key, extensions=None, accept=None):
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Accept: {accept or accept_key(key)}"]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        self.peer.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    def recv(self, what="waiting for the client's frame"):
        """A client frame: RFC 6455 §5.1 "a client MUST mask all frames"."""
        f = self.peer.recv_frame(what)
        check(f.masked, f"the client sent an unmasked frame: {f}")
        return f

    def recv_message(self, what="waiting for the client's message"):
        f = self.recv(what)
        check(f.opcode in (OP_TEXT, OP_BINARY) and f.fin, f"expected a whole data frame, got {f}")
        return f

    def expect_close(self, code, what="waiting for the client's close frame"):
        f = self.recv(what)
        check(f.opcode == OP_CLOSE, f"expected close {code}, got {f}")
        check(f.close_code() == code, f"expected close code {code}, got {f.close_code()} ({describe(f.payload)})")
        return f

    def finish_normally(self):
        """The client closes with 1000; we echo it and close TCP first."""
        self.expect_close(1000)
        self.peer.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        self.peer.close()

    def exit_status(self, expected):
        try:
            status = self.process.wait(self.d.left("waiting for the client to exit"))
        except subprocess.TimeoutExpired:
            raise CaseTimeout("the client did not exit within the case's bound")
        if expected is not None:
            check(status == expected, f"client exit status {status}, expected {expected}; {self.stderr()}")
        return status

    def stop(self):
        if self.peer:
            self.peer.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


class Suite:
    def __init__(self, client, runner, seed, client_timeout):
        self.client = client
        self.runner = runner
        self.seed = seed
        self.client_timeout = client_timeout
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]

    def case(self, name, args, script, budget=3.0):
        def fn(d):
            client_run = ClientRun(self, d, name, args)
            try:
                return script(client_run)
            finally:
                client_run.stop()
        self.runner.run("client", name, fn, budget)


def cases(suite):
    c = suite.case

    def echo_script(count=1, extensions=None, check_request=None):
        def script(s):
            s.accept()
            fields, _ = s.handshake(extensions)
            if check_request:
                check_request(fields)
            keys = []
            for _ in range(count):
                f = s.recv_message()
                keys.append(f.key)
                s.peer.send_frame(f.opcode, f.payload)
            s.finish_normally()
            s.exit_status(0)
            return keys
        return script

    def offer_is_valid(fields):
        offers = parse_extensions(fields.get("sec-websocket-extensions", []))
        check(offers and all(name == "permessage-deflate" for name, _ in offers), f"deflate offer {offers}")
    c("handshake-request-and-echo", ["--send", "hello"], echo_script(check_request=offer_is_valid))

    def keys_differ(s):
        keys = echo_script(20)(s)
        # RFC 6455 §5.3: a fresh, unpredictable masking key for every frame.
        check(len(set(keys)) == len(keys), f"masking keys repeat: {[k.hex() for k in keys]}")
    c("every-frame-masked-with-fresh-keys", ["--send", "abc", "--count", "20", "--no-deflate"], keys_differ)

    def binary_64_bit(s):
        s.accept()
        s.handshake()
        f = s.recv_message()
        check(f.opcode == OP_BINARY and len(f.payload) == 70000, f"expected 70000 binary bytes, got {f}")
        s.peer.send_frame(OP_BINARY, f.payload)
        s.finish_normally()
        s.exit_status(0)
    c("binary-70000-bytes-64-bit-length", ["--size", "70000", "--binary", "--no-deflate"], binary_64_bit)

    def answers_pings(s):
        s.accept()
        s.handshake()
        f = s.recv_message()
        # RFC 6455 §5.5.2: a pong "with identical Application data", masked.
        for payload in (b"", b"abc", bytes(range(125))):
            s.peer.send_frame(OP_PING, payload)
            pong = s.recv("waiting for the pong")
            check(pong.opcode == OP_PONG and pong.payload == payload, f"expected pong {describe(payload)}, got {pong}")
        s.peer.send_frame(f.opcode, f.payload)
        s.finish_normally()
        s.exit_status(0)
    c("answers-pings-with-masked-pongs", ["--send", "ping me", "--no-deflate"], answers_pings)

    def unsolicited_pong(s):
        s.accept()
        s.handshake()
        f = s.recv_message()
        s.peer.send_frame(OP_PONG, b"unsolicited")
        s.peer.send_frame(f.opcode, f.payload)
        s.finish_normally()  # the next frame is the close: no answer to the pong
        s.exit_status(0)
    c("unsolicited-pong-ignored", ["--send", "x", "--no-deflate"], unsolicited_pong)

    def fragmented_echo(s):
        s.accept()
        s.handshake()
        f = s.recv_message()
        p = f.payload
        s.peer.send_raw(s.peer.frame(f.opcode, p[:3], fin=False) + s.peer.frame(OP_CONT, p[3:6], fin=False)
                        + s.peer.frame(OP_PING, b"between"))
        pong = s.recv("waiting for the pong before the last fragment")
        check(pong.opcode == OP_PONG and pong.payload == b"between", f"expected the pong, got {pong}")
        s.peer.send_frame(OP_CONT, p[6:])
        s.finish_normally()
        s.exit_status(0)
    c("fragmented-echo-with-ping-between", ["--send", "fragmented echo", "--no-deflate"], fragmented_echo)

    def server_closes(s):
        s.accept()
        s.handshake()
        s.recv_message()
        s.peer.send_frame(OP_CLOSE, struct.pack("!H", 1001) + b"going away")
        # RFC 6455 §5.5.1: the client answers with a close frame, echoing the code.
        s.expect_close(1001, "waiting for the client's answer to our close")
        s.peer.close()
        s.exit_status(1)  # its message was never echoed
    c("server-close-is-echoed", ["--send", "x", "--no-deflate"], server_closes)

    def server_drops_tcp(s):
        s.accept()
        s.handshake()
        s.recv_message()
        s.peer.close()
        s.exit_status(1)
    c("server-drops-tcp-client-fails-at-once", ["--send", "x", "--no-deflate"], server_drops_tcp)

    def violation(send, code):
        def script(s):
            s.accept()
            s.handshake()
            s.recv_message()
            s.peer.send_raw(send(s.peer))
            # RFC 6455 §7.1.7: fail the connection: a close frame with the
            # code, masked like every client frame, then TCP is closed.
            s.expect_close(code)
            s.peer.expect_eof("after the client's close frame")
            s.exit_status(1)
        return script
    # RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame."
    c("masked-server-frame-1002", ["--send", "x", "--no-deflate"],
      violation(lambda p: p.frame(OP_TEXT, b"x", mask=True), 1002))
    c("rsv2-1002", ["--send", "x", "--no-deflate"], violation(lambda p: p.frame(OP_TEXT, b"x", rsv=RSV2), 1002))
    c("rsv1-without-deflate-1002", ["--send", "x", "--no-deflate"],
      violation(lambda p: p.frame(OP_TEXT, b"x", rsv=RSV1), 1002))
    c("reserved-opcode-3-1002", ["--send", "x", "--no-deflate"], violation(lambda p: p.frame(3, b"x"), 1002))
    c("ping-126-bytes-1002", ["--send", "x", "--no-deflate"], violation(lambda p: p.frame(OP_PING, b"p" * 126), 1002))
    c("continuation-without-start-1002", ["--send", "x", "--no-deflate"],
      violation(lambda p: p.frame(OP_CONT, b"x"), 1002))
    c("invalid-utf8-1007", ["--send", "x", "--no-deflate"],
      violation(lambda p: p.frame(OP_TEXT, b"x\xed\xa0\x80"), 1007))
    # RFC 6455 §8.1, Autobahn 6.4.3/6.4.4: one text frame of which only a
    # part arrives, already invalid: 1007 before the rest of it is sent.
    def unfinished_text_frame(size, bad):
        def send(p):
            payload = (b"\xce\xba\xe1\xbd\xb9" + bad).ljust(size, b"a")
            whole = p.frame(OP_TEXT, payload)
            return whole[:len(whole) - len(payload) + 5 + len(bad)]
        return send
    for size in (64, 100 * 1024):
        c(f"invalid-utf8-inside-an-unfinished-{size}-byte-frame-1007", ["--send", "x", "--no-deflate"],
          violation(unfinished_text_frame(size, b"\xf4\x90\x80\x80"), 1007))
    c("close-1-byte-payload-1002", ["--send", "x", "--no-deflate"], violation(lambda p: p.frame(OP_CLOSE, b"\x03"), 1002))
    c("close-code-1005-1002", ["--send", "x", "--no-deflate"],
      violation(lambda p: p.frame(OP_CLOSE, struct.pack("!H", 1005)), 1002))

    def handshake_refused(respond):
        def script(s):
            s.accept()
            _, key = s.handshake(respond=False)
            respond(s, key)
            # RFC 6455 §4.1: "the client MUST _Fail the WebSocket Connection_":
            # no frame is sent, TCP is closed.
            s.peer.expect_eof("after the refused handshake")
            s.exit_status(1)
        return script
    c("wrong-accept-key-fails", ["--send", "x"],
      handshake_refused(lambda s, key: s.respond_101(key, accept=accept_key(key + "x"))))
    c("http-404-fails", ["--send", "x"],
      handshake_refused(lambda s, key: s.peer.send_raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")))
    # RFC 6455 §4.1: an extension the client did not ask for fails it.
    c("extension-not-offered-fails", ["--send", "x", "--no-deflate"],
      handshake_refused(lambda s, key: s.respond_101(key, extensions="permessage-deflate")))
    c("unknown-extension-fails", ["--send", "x"],
      handshake_refused(lambda s, key: s.respond_101(key, extensions="x-unknown")))

    def missing_upgrade(s, key):
        s.peer.send_raw(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode())
    c("101-without-upgrade-header-fails", ["--send", "x"], handshake_refused(missing_upgrade))

    def unrequested_subprotocol(s, key):
        s.peer.send_raw(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: chat\r\n\r\n").encode())
    # RFC 6455 §4.1: a subprotocol the client did not ask for fails it.
    c("subprotocol-not-requested-fails", ["--send", "x"], handshake_refused(unrequested_subprotocol))

    def eof_in_handshake(s):
        s.accept()
        s.handshake(respond=False)
        s.peer.send_raw(b"HTTP/1.1 101 Switching")
        s.peer.close()
        s.exit_status(1)
    c("server-eof-inside-101-fails-at-once", ["--send", "x"], eof_in_handshake)

    def pipelined_101(chop):
        def script(s):
            # The 101 and the first frames in one write (or one byte at a
            # time): the client reads frames that came with the response.
            s.accept()
            _, key = s.handshake(respond=False)
            head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode()
            s.peer.send_raw(head + s.peer.frame(OP_PING, b"early"), chop)
            first = s.recv("waiting for the pong or the message")
            second = s.recv("waiting for the pong or the message")
            pong, message = (first, second) if first.opcode == OP_PONG else (second, first)
            check(pong.opcode == OP_PONG and pong.payload == b"early", f"expected pong 'early', got {pong}")
            check(message.opcode == OP_TEXT, f"expected the message, got {message}")
            s.peer.send_frame(OP_TEXT, message.payload)
            s.finish_normally()
            s.exit_status(0)
        return script
    c("ping-in-same-write-as-101", ["--send", "x", "--no-deflate"], pipelined_101(None))
    c("101-and-ping-in-1-byte-writes", ["--send", "x", "--no-deflate"], pipelined_101(1))

    def deflate_both_ways(s):
        s.accept()
        fields, key = s.handshake(respond=False)
        offers = parse_extensions(fields.get("sec-websocket-extensions", []))
        check(offers and offers[0][0] == "permessage-deflate", f"no deflate offer: {offers}")
        params = offers[0][1]
        answer = "permessage-deflate; server_no_context_takeover"
        client_bits = 15
        if "client_max_window_bits" in params:
            client_bits = min(10, int(params["client_max_window_bits"] or 15))
            answer += f"; client_max_window_bits={client_bits}"
        server_bits = int(params.get("server_max_window_bits") or 15)
        if params.get("server_max_window_bits"):
            answer += f"; server_max_window_bits={server_bits}"
        s.respond_101(key, answer)
        inflater = zlib.decompressobj(-client_bits)  # the client keeps its context
        compressed = 0
        for _ in range(3):
            f = s.recv()
            check(f.opcode == OP_TEXT and f.fin, f"expected a text frame, got {f}")
            data = f.payload
            if f.rsv == RSV1:
                compressed += 1
                data = inflate_message(inflater, data)
            else:
                check(f.rsv == 0, f"RSV bits {f.rsv:#x}")
            check(len(data) == 5000, f"inflated to {len(data)} bytes, expected 5000")
            # No context takeover on our side: a fresh compressor each time.
            s.peer.send_frame(OP_TEXT, deflate_message(zlib.compressobj(6, zlib.DEFLATED, -server_bits), data),
                              rsv=RSV1)
        check(compressed == 3, f"{compressed} of 3 messages compressed")
        s.finish_normally()
        s.exit_status(0)
        return f"answered {answer!r}"
    c("deflate-both-ways", ["--size", "5000", "--count", "3", "--expect-deflate", "yes"], deflate_both_ways)

    def fragments(deflate, size):
        def script(s):
            s.accept()
            if deflate:
                fields, key = s.handshake(respond=False)
                s.respond_101(key, "permessage-deflate")
            else:
                s.handshake()
            frames = [s.recv()]
            while not frames[-1].fin:
                frames.append(s.recv("waiting for the next fragment"))
            # RFC 6455 §5.4: the first frame has the opcode, the rest are
            # continuations; RFC 7692 §6.1: RSV1 on the first frame only.
            check(frames[0].opcode == OP_TEXT, f"first fragment {frames[0]}")
            check(all(f.opcode == OP_CONT and f.rsv == 0 for f in frames[1:]), f"continuations {frames[1:]}")
            check(frames[0].rsv == (RSV1 if deflate else 0), f"first fragment's RSV bits {frames[0].rsv:#x}")
            check(all(len(f.payload) == size for f in frames[:-1]) and 0 < len(frames[-1].payload) <= size,
                  f"fragment sizes {[len(f.payload) for f in frames]}")
            data = b"".join(f.payload for f in frames)
            if deflate:
                data = inflate_message(zlib.decompressobj(-15), data)
            check(len(data) == 5000, f"message of {len(data)} bytes, expected 5000")
            s.peer.send_frame(OP_TEXT, data)
            s.finish_normally()
            s.exit_status(0)
            return f"{len(frames)} fragments"
        return script
    c("fragment-option-splits-messages", ["--size", "5000", "--fragment", "300", "--no-deflate"], fragments(False, 300))
    c("fragment-option-with-deflate", ["--size", "5000", "--fragment", "20", "--expect-deflate", "yes"],
      fragments(True, 20))

    def deflate_declined(s):
        s.accept()
        s.handshake()
        f = s.recv_message()
        check(f.rsv == 0, f"RSV1 set though deflate was declined: {f}")
        s.peer.send_frame(f.opcode, f.payload)
        s.finish_normally()
        s.exit_status(0)
    c("deflate-declined-sends-plain", ["--size", "5000", "--expect-deflate", "no"], deflate_declined)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", required=True, help="the client example")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--hard-bound", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=6455)
    parser.add_argument("--only", action="append")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    runner = Runner(args.time_scale, args.hard_bound, args.only, args.verbose)
    # The client's own timeout (exit 3) is far beyond every case's bound.
    suite = Suite(args.client, runner, args.seed, client_timeout=int(30 * args.time_scale))
    try:
        cases(suite)
    finally:
        suite.listener.close()
    return 0 if runner.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
