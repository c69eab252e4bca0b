#!/usr/bin/env python3
"""WebSocket server conformance suite: raw frames over loopback TCP.

One case per rule of RFC 6455 (and RFC 7692 for permessage-deflate), grouped
like the RFCs. Each case checks the exact bytes or close code it expects and
its own duration: a case whose wait runs into its time bound fails, so no
case can pass by waiting.

    run.py --server-cmd "build/examples/echo_server --port 0 --max-size 16777216"
    run.py --server-cmd "build/examples/poll_echo_server 0"
    run.py --port 9001 [--server-max-size BYTES]

With --server-cmd the suite starts the server, reads the port from its
"listening on HOST:PORT" line, and at the end stops it with SIGTERM (by PID)
while a client is connected: that client must get close 1001 and the server
must exit 0. The server's message size limit is taken from a `--max-size N`
in the command (else 1 MiB, the library's default); --server-max-size
overrides it. Sizes above the limit are skipped, and the limit itself is
tested at N (echoed) and N + 1 (close 1009).

What our servers do where the RFC leaves a choice:
- RFC 6455 §5.5.3 lets an endpoint answer only the latest of several pings;
  ours answer every ping, in order (10 pings in one write: 10 pongs), unless
  their send queue is above its limit: then the pongs owed are coalesced
  into one for the latest ping. Both servers stop reading while their queue
  is full, so in practice every ping is answered (pings-behind-blocked-output
  accepts either).
- A close frame is echoed with its status code and no reason; an empty close
  frame is echoed empty (1005 is never sent).
- After failing a connection (1002, 1007, 1009) the server sends its close
  frame and closes TCP at once, without waiting for the client's close.
- Non-minimal length encodings (RFC 6455 §5.2 "MUST be used") are refused
  with 1002, like any other malformed frame.
- Deflate data that does not inflate fails the connection with 1002.
- A compressed message ending in a DEFLATE block with BFINAL set (RFC 7692
  §7.2.3.4) is accepted, and so is the next message of a fresh stream.
- Messages are echoed whole in one frame, whatever fragments they came in;
  with permessage-deflate, messages under 64 bytes go back uncompressed.

Prints one line per case, a table by group, and ends with `N passed,
N failed`. Exits 1 if any case failed.
"""

import argparse
import os
import random
import shlex
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawws import (  # noqa: E402
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2, RSV3,
    CaseFailed, Peer, Runner, accept_key, binary_payload, build_frame, check,
    deflate_message, describe, inflate_message, parse_extensions, parse_head,
    start_process, stop_process, text_payload,
)

MIB = 1 << 20


class Server:
    """Where the server is and what it allows."""

    def __init__(self, host, port, max_size, max_fragments, deflate, seed):
        self.host, self.port = host, port
        self.max_size = max_size
        self.max_fragments = max_fragments
        self.deflate = deflate
        self.seed = seed

    def rng(self, d):
        # Each case's own seeded generator (write sizes, mask keys): the same
        # bytes in the same writes on every run.
        return random.Random(self.seed ^ zlib.crc32(d.name.encode()))

    def open_tcp(self, d):
        sock = socket.create_connection((self.host, self.port), timeout=d.left("connecting"))
        return Peer(sock, d, self.rng(d), masking=True)

    def request(self, key="dGhlIHNhbXBsZSBub25jZQ==", extensions=None, version="13", extra=(), path="/"):
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Upgrade: websocket",
                 "Connection: Upgrade"]
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        if extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        lines.extend(extra)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def connect(self, d, extensions=None, after=b"", chop=None):
        """Opens a WebSocket; `after` is sent in the same write as the
        request. Returns (peer, response fields)."""
        peer = self.open_tcp(d)
        key = "x3JJHMbDL1EzLkh9GBhXDw=="
        peer.send_raw(self.request(key=key, extensions=extensions) + after, chop)
        status, fields = parse_head(peer.read_until(b"\r\n\r\n", "waiting for the handshake response"))
        check(status.startswith("HTTP/1.1 101"), f"handshake answered {status!r}")
        check(fields.get("sec-websocket-accept") == [accept_key(key)],
              f"Sec-WebSocket-Accept {fields.get('sec-websocket-accept')}")
        return peer, fields


# ---- expectations ---------------------------------------------------------


def read_message(peer, what="waiting for the echo"):
    """The next whole data message: (opcode, payload, first frame's rsv,
    frames). A control frame in between fails the case."""
    frames = []
    while True:
        f = peer.recv_frame(what)
        check(not f.masked, f"the server masked a frame: {f}")
        check(f.opcode in (OP_TEXT, OP_BINARY, OP_CONT), f"expected a data frame {what}, got {f}")
        if not frames:
            check(f.opcode != OP_CONT, f"a continuation frame starts the echo: {f}")
        else:
            check(f.opcode == OP_CONT, f"a new message inside the echo: {f}")
            check(f.rsv == 0, f"RSV bits on a continuation of the echo: {f}")
        frames.append(f)
        if f.fin:
            break
    return frames[0].opcode, b"".join(f.payload for f in frames), frames[0].rsv, frames


def expect_echo(peer, opcode, payload, what="waiting for the echo"):
    op, got, rsv, frames = read_message(peer, what)
    check(rsv == 0, f"RSV bits {rsv:#x} on the echo without an extension")
    check(op == opcode, f"echo opcode {op}, expected {opcode}")
    check(got == payload, f"echo differs: got {describe(got)}, sent {describe(payload)}")
    return frames


def expect_close(peer, code, what="waiting for the close frame"):
    """The next frame is a close frame with `code` (None: an empty payload),
    and then the server closes TCP."""
    f = peer.recv_frame(what)
    check(f.opcode == OP_CLOSE, f"expected close {code}, got {f}")
    check(not f.masked and f.rsv == 0 and f.fin, f"malformed close frame {f}")
    if code is None:
        check(f.payload == b"", f"expected an empty close payload, got {describe(f.payload)}")
    else:
        check(f.close_code() == code, f"expected close code {code}, got {f.close_code()} ({describe(f.payload)})")
        try:
            f.payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise CaseFailed(f"the close reason is not UTF-8: {describe(f.payload)}")
    peer.expect_eof()
    return f


def expect_failure(peer, code, what="waiting for the close frame"):
    """The server fails the connection: close `code`, then TCP closes."""
    return expect_close(peer, code, what)


def close_normally(peer, code=1000):
    peer.send_close(code)
    expect_close(peer, code, "waiting for the close echo")


# ---- groups ------------------------------------------------------------------


def handshake_cases(run, s):
    g = "handshake"

    def valid(d):
        peer, fields = s.connect(d)
        check(any("websocket" == v.lower() for v in fields.get("upgrade", [])), f"Upgrade {fields.get('upgrade')}")
        check(any("upgrade" in v.lower() for v in fields.get("connection", [])), f"Connection {fields.get('connection')}")
        check("sec-websocket-extensions" not in fields, "an extension answered that was not offered")
        check("sec-websocket-protocol" not in fields, "a subprotocol answered that was not offered")
        close_normally(peer)
    run(g, "valid-request-101", valid)

    def refused(request, statuses, header=None):
        def case(d):
            peer = s.open_tcp(d)
            peer.send_raw(request)
            status, fields = parse_head(peer.read_until(b"\r\n\r\n", "waiting for the refusal"))
            code = int(status.split()[1])
            check(code in statuses, f"answered {status!r}, expected {statuses}")
            if header:
                check(fields.get(header[0]) == [header[1]], f"{header[0]}: {fields.get(header[0])}")
            length = int(fields.get("content-length", ["0"])[0])
            peer.read_exact(length, "reading the refusal's body")
            peer.expect_eof("after the refusal")
        return case
    run(g, "not-http-400", refused(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", (400,)))
    run(g, "missing-host-400", refused(s.request().replace(f"Host: {s.host}:{s.port}\r\n".encode(), b""), (400,)))
    run(g, "http-1.0-400", refused(s.request().replace(b"HTTP/1.1", b"HTTP/1.0"), (400,)))
    run(g, "version-8-426", refused(s.request(version="8"), (426,), ("sec-websocket-version", "13")))
    run(g, "missing-key-400", refused(s.request(key=None), (400,)))
    run(g, "bad-key-400", refused(s.request(key="c2hvcnQ="), (400,)))

    def subprotocol_not_chosen(d):
        # RFC 6455 §4.2.2: a server that selects none of the offered
        # subprotocols sends no Sec-WebSocket-Protocol (an echo server picks none).
        peer = s.open_tcp(d)
        peer.send_raw(s.request(extra=["Sec-WebSocket-Protocol: chat, superchat"]))
        status, fields = parse_head(peer.read_until(b"\r\n\r\n", "waiting for the handshake response"))
        check(status.startswith("HTTP/1.1 101"), f"answered {status!r}")
        check("sec-websocket-protocol" not in fields, f"Sec-WebSocket-Protocol {fields.get('sec-websocket-protocol')}")
        close_normally(peer)
    run(g, "subprotocols-offered-none-chosen", subprotocol_not_chosen)

    def keep_alive_upgrade(d):
        # RFC 6455 §4.2.1: Connection must include the token "Upgrade" (a
        # browser sends "keep-alive, Upgrade"); header names and the Upgrade
        # value are case-insensitive.
        peer = s.open_tcp(d)
        request = s.request(extra=()).replace(b"Connection: Upgrade", b"connection: keep-alive, Upgrade")
        peer.send_raw(request.replace(b"Upgrade: websocket", b"UPGRADE: WebSocket"))
        status, fields = parse_head(peer.read_until(b"\r\n\r\n", "waiting for the handshake response"))
        check(status.startswith("HTTP/1.1 101"), f"answered {status!r}")
        close_normally(peer)
    run(g, "connection-keep-alive-upgrade", keep_alive_upgrade)
    run(g, "head-over-16KiB-431",
        refused(s.request(extra=[f"X-Filler-{i}: {'f' * 200}" for i in range(90)]), (431,)))

    def pipelined(d):
        peer, _ = s.connect(d, after=build_frame(OP_TEXT, b"early", mask_key=b"\x01\x02\x03\x04"))
        expect_echo(peer, OP_TEXT, b"early")
        close_normally(peer)
    run(g, "frame-in-same-write-as-request", pipelined)

    def bytewise(d):
        peer, _ = s.connect(d, chop=1)
        peer.send_frame(OP_TEXT, b"hi")
        expect_echo(peer, OP_TEXT, b"hi")
        close_normally(peer)
    run(g, "request-in-1-byte-writes", bytewise)


def framing_cases(run, s):
    g = "framing"
    lengths = [0, 125, 126, 127, 65535, 65536, MIB, 16 * MIB]
    for n in lengths:
        encoding = "7-bit" if n < 126 else "16-bit" if n < 65536 else "64-bit"
        chops = [None, "random"] + ([1] if n <= 127 else [])
        for opcode, kind in ((OP_TEXT, "text"), (OP_BINARY, "binary")):
            for chop in chops:
                how = {None: "whole", "random": "random-writes", 1: "1-byte-writes"}[chop]
                name = f"{kind}-{n}-{encoding}-{how}"
                if n > s.max_size:
                    run.skip(g, name, f"above the server's max size {s.max_size}")
                    continue
                budget = 2.0 if n <= 65536 else 6.0 if n <= MIB else 40.0

                def case(d, n=n, opcode=opcode, chop=chop):
                    payload = text_payload(n, n) if opcode == OP_TEXT else binary_payload(n, n)
                    peer, _ = s.connect(d)
                    peer.send_frame(opcode, payload, chop=chop)
                    frames = expect_echo(peer, opcode, payload)
                    close_normally(peer)
                    return f"echo in {len(frames)} frame(s)"
                run(g, name, case, budget)

    def many_in_one_write(d):
        peer, _ = s.connect(d)
        messages = [text_payload(i * 3, i) for i in range(100)]
        peer.send_raw(b"".join(peer.frame(OP_TEXT, m) for m in messages))
        for m in messages:
            expect_echo(peer, OP_TEXT, m)
        close_normally(peer)
    run(g, "100-messages-in-one-write", many_in_one_write)

    def zero_mask(d):
        peer, _ = s.connect(d)
        peer.send_frame(OP_BINARY, b"\x00\xffzero key", key=b"\x00\x00\x00\x00")
        expect_echo(peer, OP_BINARY, b"\x00\xffzero key")
        close_normally(peer)
    run(g, "mask-key-all-zero", zero_mask)

    def failing(frame_bytes, code=1002, before=b""):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_raw(before + frame_bytes(peer))
            expect_failure(peer, code)
        return case
    # RFC 6455 §5.1: "The server MUST close the connection upon receiving a
    # frame that is not masked."
    run(g, "unmasked-frame-1002", failing(lambda p: build_frame(OP_TEXT, b"Hello")))
    run(g, "unmasked-ping-1002", failing(lambda p: build_frame(OP_PING, b"x")))
    # RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
    run(g, "non-minimal-16-bit-length-1002", failing(lambda p: p.frame(OP_TEXT, b"Hello", encoding=16)))
    run(g, "non-minimal-64-bit-length-1002", failing(lambda p: p.frame(OP_TEXT, b"x" * 200, encoding=64)))
    # RFC 6455 §5.2: in the 64-bit length "the most significant bit MUST be 0".
    run(g, "64-bit-length-top-bit-1002",
        failing(lambda p: bytes([0x82, 0xFF]) + struct.pack("!Q", (1 << 63) | 5) + b"\x00" * 4))

    def valid_then_bad(d):
        # A message received whole before the bad frame is still echoed.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"first") + peer.frame(OP_TEXT, b"bad", rsv=RSV2))
        expect_echo(peer, OP_TEXT, b"first")
        expect_failure(peer, 1002)
    run(g, "message-before-bad-frame-is-echoed", valid_then_bad)

    def big_then_bad(d):
        peer, _ = s.connect(d)
        payload = binary_payload(min(s.max_size, 4 * MIB), 5)
        peer.send_raw(peer.frame(OP_BINARY, payload) + peer.frame(OP_TEXT, b"bad", rsv=RSV3))
        expect_echo(peer, OP_BINARY, payload)
        expect_failure(peer, 1002)
    run(g, "big-message-before-bad-frame-is-echoed", big_then_bad, 6.0)


def ping_cases(run, s):
    g = "ping-pong"

    def pong_for(payload, chop=None):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_frame(OP_PING, payload, chop=chop)
            f = peer.recv_frame("waiting for the pong")
            check(f.opcode == OP_PONG and f.fin and not f.rsv and not f.masked, f"expected a pong, got {f}")
            check(f.payload == payload, f"pong payload {describe(f.payload)} != ping's {describe(payload)}")
            close_normally(peer)
        return case
    # RFC 6455 §5.5.2/§5.5.3: a pong with "identical Application data".
    run(g, "ping-0-bytes-pong", pong_for(b""))
    run(g, "ping-125-bytes-pong", pong_for(bytes(range(125))))
    run(g, "ping-binary-payload-pong", pong_for(bytes([0, 0xFF, 0xFE, 0x80, 0xC0, 0xED, 0xA0])))
    run(g, "ping-125-bytes-1-byte-writes", pong_for(b"p" * 125, chop=1))

    def too_long(opcode):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_frame(opcode, b"x" * 126)
            expect_failure(peer, 1002)
        return case
    # RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    run(g, "ping-126-bytes-1002", too_long(OP_PING))
    run(g, "pong-126-bytes-1002", too_long(OP_PONG))

    def unsolicited(payload):
        def case(d):
            # RFC 6455 §5.5.3: "A response to an unsolicited Pong frame is not expected."
            peer, _ = s.connect(d)
            peer.send_raw(peer.frame(OP_PONG, payload) + peer.frame(OP_TEXT, b"after the pong"))
            expect_echo(peer, OP_TEXT, b"after the pong", "waiting for the echo (and nothing before it)")
            close_normally(peer)
        return case
    run(g, "unsolicited-pong-ignored", unsolicited(b"unsolicited"))
    run(g, "unsolicited-pong-125-ignored", unsolicited(b"u" * 125))

    def ten_pings(d):
        peer, _ = s.connect(d)
        payloads = [f"ping {i}".encode() for i in range(10)]
        peer.send_raw(b"".join(peer.frame(OP_PING, p) for p in payloads) + peer.frame(OP_TEXT, b"end"))
        got = []
        while True:
            f = peer.recv_frame("waiting for the pongs")
            if f.opcode != OP_PONG:
                break
            got.append(f.payload)
        check(f.opcode == OP_TEXT and f.payload == b"end", f"expected the echo after the pongs, got {f}")
        check(got == payloads, f"pongs {got}, expected one per ping in order (coalescing not expected here)")
        close_normally(peer)
    run(g, "10-pings-10-pongs-in-order", ten_pings)

    def pings_while_blocked(d):
        # RFC 6455 §5.5.3: with its output blocked, an endpoint may answer
        # only the most recent ping. The pongs that come are in order, and
        # the last one answers the last ping.
        peer, _ = s.connect(d)
        big = binary_payload(min(s.max_size, MIB), 3)
        count = 8
        payloads = [f"ping {i}".encode() for i in range(10)]
        wire = b"".join(peer.frame(OP_BINARY, big) for _ in range(count))
        wire += b"".join(peer.frame(OP_PING, p) for p in payloads)
        failure = []

        def send():
            try:
                peer.sock.sendall(wire)
            except OSError as e:
                failure.append(e)
        # Nothing is read while the sender runs (up to a second): the
        # server's output backs up behind the unread echoes. Once the buffers
        # are full the reading starts anyway, so the case cannot deadlock.
        thread = threading.Thread(target=send)
        thread.start()
        thread.join(min(1.0, d.left("sending")))
        echoes, pongs = 0, []
        try:
            while echoes < count or not pongs or pongs[-1] != payloads[-1]:
                f = peer.recv_frame("reading the echoes and pongs")
                if f.opcode == OP_PONG:
                    pongs.append(f.payload)
                else:
                    check(f.opcode == OP_BINARY and f.payload == big, f"expected an echo, got {f}")
                    echoes += 1
        finally:
            thread.join(d.left("waiting for the sender"))
        check(not failure, f"sending failed: {failure}")
        check(all(p in payloads for p in pongs) and pongs == sorted(pongs, key=payloads.index)
              and len(set(pongs)) == len(pongs), f"pongs out of order or unknown: {pongs}")
        close_normally(peer)
        return f"{len(pongs)} pong(s) for 10 pings sent behind {count} MiB of echoes"
    run(g, "pings-behind-blocked-output-last-answered", pings_while_blocked, 10.0)

    def ping_after_message(d):
        # Both answered; the RFC does not order a pong against an echo.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"msg") + peer.frame(OP_PING, b"pp"))
        got = sorted((f.opcode, f.payload) for f in (peer.recv_frame("waiting for the echo and the pong"),
                                                     peer.recv_frame("waiting for the echo and the pong")))
        check(got == [(OP_TEXT, b"msg"), (OP_PONG, b"pp")], f"expected the echo and pong 'pp', got {got}")
        close_normally(peer)
    run(g, "message-then-ping-both-answered", ping_after_message)


def reserved_cases(run, s):
    g = "reserved"

    def failing(opcode, rsv=0, fin=True, payload=b"Hello"):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_frame(opcode, payload, fin=fin, rsv=rsv)
            expect_failure(peer, 1002)
        return case
    # RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated".
    run(g, "rsv1-without-deflate-1002", failing(OP_TEXT, RSV1))
    run(g, "rsv2-text-1002", failing(OP_TEXT, RSV2))
    run(g, "rsv3-text-1002", failing(OP_TEXT, RSV3))
    run(g, "rsv-all-binary-1002", failing(OP_BINARY, RSV1 | RSV2 | RSV3))
    run(g, "rsv2-ping-1002", failing(OP_PING, RSV2))
    run(g, "rsv3-close-1002", failing(OP_CLOSE, RSV3, payload=struct.pack("!H", 1000)))
    # RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint
    # MUST _Fail the WebSocket Connection_."
    for opcode in list(range(3, 8)) + list(range(0xB, 0x10)):
        run(g, f"opcode-{opcode:X}-1002", failing(opcode))
    run(g, "opcode-3-unfinished-1002", failing(3, fin=False))
    run(g, "opcode-B-empty-1002", failing(0xB, payload=b""))


def fragmentation_cases(run, s):
    g = "fragmentation"

    def fragmented(opcode, pieces, chop=None):
        def case(d):
            peer, _ = s.connect(d)
            data = b""
            for i, piece in enumerate(pieces):
                data += peer.frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
            peer.send_raw(data, chop)
            expect_echo(peer, opcode, b"".join(pieces))
            close_normally(peer)
        return case
    # RFC 6455 §5.4: a message in fragments: the first frame's opcode, then
    # continuations, the last with FIN.
    run(g, "text-2-fragments", fragmented(OP_TEXT, [b"Hello, ", b"world"]))
    run(g, "text-3-fragments", fragmented(OP_TEXT, [b"one ", b"two ", b"three"]))
    run(g, "binary-3-fragments", fragmented(OP_BINARY, [b"\x00\x01", b"\xff", b"\xfe\xfd"]))
    run(g, "text-1-byte-fragments", fragmented(OP_TEXT, [bytes([c]) for c in b"fragment by fragment"]))
    run(g, "text-empty-fragments", fragmented(OP_TEXT, [b"", b"", b"middle", b"", b""]))
    run(g, "text-all-empty-fragments", fragmented(OP_TEXT, [b"", b""]))
    run(g, "binary-64KiB-in-4-fragments",
        fragmented(OP_BINARY, [binary_payload(16384, i) for i in range(4)]), 3.0)
    run(g, "text-fragments-in-1-byte-writes", fragmented(OP_TEXT, [b"abc", b"def", b"ghi"], chop=1))

    def ping_between(d):
        # RFC 6455 §5.4: "control frames MAY be injected in the middle of a
        # fragmented message"; the pong must not wait for the message's end.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"frag1 ", fin=False) + peer.frame(OP_PING, b"in between"))
        f = peer.recv_frame("waiting for the pong while the message is still open")
        check(f.opcode == OP_PONG and f.payload == b"in between", f"expected the pong, got {f}")
        peer.send_raw(peer.frame(OP_CONT, b"frag2 ", fin=False) + peer.frame(OP_PING, b"again")
                      + peer.frame(OP_CONT, b"frag3"))
        f = peer.recv_frame("waiting for the second pong")
        check(f.opcode == OP_PONG and f.payload == b"again", f"expected the second pong, got {f}")
        expect_echo(peer, OP_TEXT, b"frag1 frag2 frag3")
        close_normally(peer)
    run(g, "ping-between-fragments", ping_between)

    def pong_between(d):
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_BINARY, b"ab", fin=False) + peer.frame(OP_PONG, b"unsolicited")
                      + peer.frame(OP_CONT, b"cd"))
        expect_echo(peer, OP_BINARY, b"abcd")
        close_normally(peer)
    run(g, "pong-between-fragments", pong_between)

    def close_between(d):
        # The close is answered; the unfinished message is dropped.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"never finished", fin=False) + peer.frame(OP_CLOSE, struct.pack("!H", 1000)))
        expect_close(peer, 1000)
    run(g, "close-between-fragments", close_between)

    def failing(frames, code=1002):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_raw(b"".join(peer.frame(*f[:2], fin=f[2]) for f in frames))
            expect_failure(peer, code)
        return case
    # RFC 6455 §5.4: continuations belong to a started message; a new data
    # message cannot start inside one.
    run(g, "continuation-without-start-1002", failing([(OP_CONT, b"orphan", True)]))
    run(g, "continuation-unfinished-without-start-1002", failing([(OP_CONT, b"orphan", False)]))

    def continuation_after_end(d):
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"whole") + peer.frame(OP_CONT, b"late"))
        expect_echo(peer, OP_TEXT, b"whole")
        expect_failure(peer, 1002)
    run(g, "continuation-after-finished-message-1002", continuation_after_end)
    run(g, "nested-text-in-text-1002", failing([(OP_TEXT, b"a", False), (OP_TEXT, b"b", True)]))
    run(g, "nested-binary-in-text-1002", failing([(OP_TEXT, b"a", False), (OP_BINARY, b"b", False)]))
    run(g, "nested-text-in-binary-1002",
        failing([(OP_BINARY, b"a", False), (OP_CONT, b"b", False), (OP_TEXT, b"c", True)]))
    # RFC 6455 §5.5: "Control frames themselves MUST NOT be fragmented."
    run(g, "fragmented-ping-1002", failing([(OP_PING, b"a", False), (OP_CONT, b"b", True)]))
    run(g, "fragmented-pong-1002", failing([(OP_PONG, b"a", False), (OP_CONT, b"b", True)]))
    run(g, "fragmented-close-1002", failing([(OP_CLOSE, struct.pack("!H", 1000), False), (OP_CONT, b"", True)]))
    run(g, "unfinished-ping-alone-1002", failing([(OP_PING, b"a", False)]))
    run(g, "unfinished-ping-inside-message-1002",
        failing([(OP_TEXT, b"a", False), (OP_PING, b"b", False), (OP_CONT, b"c", True)]))


VALID_UTF8 = [
    ("ascii", b"Hello, world"),
    ("mixed-latin", "Hello-µ@ßöäüàá-UTF-8!!".encode()),
    ("greek-kosme", "κόσμε".encode()),
    ("U+0000", b"\x00"),
    ("U+0080", b"\xc2\x80"),
    ("U+07FF", b"\xdf\xbf"),
    ("U+0800", b"\xe0\xa0\x80"),
    ("U+D7FF", b"\xed\x9f\xbf"),
    ("U+E000", b"\xee\x80\x80"),
    ("U+FFFD", b"\xef\xbf\xbd"),
    ("U+FFFE-noncharacter", b"\xef\xbf\xbe"),
    ("U+FFFF", b"\xef\xbf\xbf"),
    ("U+10000", b"\xf0\x90\x80\x80"),
    ("U+10FFFF", b"\xf4\x8f\xbf\xbf"),
    ("bom", b"\xef\xbb\xbfbom"),
    ("all-lengths", "a ö € 𝄞 漢".encode()),
]

INVALID_UTF8 = [
    ("lone-continuation-80", b"a\x80b"),
    ("lone-continuation-bf", b"\xbf"),
    ("overlong-nul-c0-80", b"\xc0\x80"),
    ("overlong-c1-bf", b"\xc1\xbf"),
    ("overlong-3-byte-e0-80-80", b"\xe0\x80\x80"),
    ("overlong-3-byte-e0-9f-bf", b"\xe0\x9f\xbf"),
    ("overlong-4-byte-f0-80-80-80", b"\xf0\x80\x80\x80"),
    ("overlong-4-byte-f0-8f-bf-bf", b"\xf0\x8f\xbf\xbf"),
    ("surrogate-d800", b"\xed\xa0\x80"),
    ("surrogate-dfff", b"\xed\xbf\xbf"),
    ("surrogate-pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above-10ffff-f4-90", b"\xf4\x90\x80\x80"),
    ("f5-lead", b"\xf5\x80\x80\x80"),
    ("5-byte-form", b"\xf8\x88\x80\x80\x80"),
    ("6-byte-form", b"\xfc\x84\x80\x80\x80\x80"),
    ("fe", b"\xfe"),
    ("ff", b"\xff"),
    ("truncated-2-byte-at-end", b"abc\xc2"),
    ("truncated-3-byte-at-end", b"abc\xe2\x82"),
    ("truncated-4-byte-at-end", b"abc\xf0\x9d\x84"),
    ("bad-continuation-c3-28", b"\xc3\x28"),
    ("bad-continuation-e2-28-a1", b"\xe2\x28\xa1"),
    ("kosme-then-surrogate", "κόσμε".encode() + b"\xed\xa0\x80edited"),
]


def utf8_cases(run, s):
    g = "utf8"

    def echo(payload, pieces=None):
        def case(d):
            peer, _ = s.connect(d)
            if pieces is None:
                peer.send_frame(OP_TEXT, payload)
            else:
                peer.send_raw(b"".join(peer.frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
                                       for i, p in enumerate(pieces)))
            expect_echo(peer, OP_TEXT, payload)
            close_normally(peer)
        return case
    for name, payload in VALID_UTF8:
        run(g, f"valid-{name}", echo(payload))
    # RFC 6455 §5.6/§8.1: text is UTF-8 over the whole message, so a character
    # may be split across fragments.
    for name, char in (("2-byte-ö", "ö"), ("3-byte-€", "€"), ("4-byte-𝄞", "𝄞"), ("4-byte-U+10FFFF", "\U0010ffff")):
        encoded = char.encode()
        payload = b"a" + encoded + b"b"
        for k in range(1, len(encoded)):
            run(g, f"valid-{name}-split-after-byte-{k}", echo(payload, [payload[:1 + k], payload[1 + k:]]))
    kosme = "κόσμε 𝄞€".encode()
    run(g, "valid-every-byte-its-own-fragment", echo(kosme, [bytes([b]) for b in kosme]))

    def invalid(payload, per_byte=False):
        def case(d):
            peer, _ = s.connect(d)
            if per_byte:
                peer.send_raw(b"".join(peer.frame(OP_TEXT if i == 0 else OP_CONT, bytes([b]), fin=i == len(payload) - 1)
                                       for i, b in enumerate(payload)))
            else:
                peer.send_frame(OP_TEXT, payload)
            expect_failure(peer, 1007)
        return case
    # RFC 6455 §8.1: invalid UTF-8 in a text message: fail with 1007.
    for name, payload in INVALID_UTF8:
        run(g, f"invalid-{name}-1007", invalid(payload))
    for name in ("surrogate-d800", "above-10ffff-f4-90", "overlong-nul-c0-80", "truncated-3-byte-at-end"):
        run(g, f"invalid-{name}-in-1-byte-fragments-1007", invalid(dict(INVALID_UTF8)[name], per_byte=True))

    def fail_fast(pieces):
        # The invalid byte arrives in a later, unfinished fragment: the server
        # must fail now, not wait for a final fragment that never comes.
        def case(d):
            peer, _ = s.connect(d)
            peer.send_raw(b"".join(peer.frame(OP_TEXT if i == 0 else OP_CONT, p, fin=False)
                                   for i, p in enumerate(pieces)))
            expect_failure(peer, 1007, "waiting for 1007 before the final fragment")
        return case
    run(g, "fail-fast-invalid-in-second-fragment",
        fail_fast(["κόσμε".encode(), b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited"]))
    run(g, "fail-fast-invalid-in-third-fragment", fail_fast([b"ok ", b"still ok ", b"\xff"]))
    run(g, "fail-fast-surrogate-prefix-at-fragment-end", fail_fast([b"ok ", b"\xed\xa0"]))
    run(g, "fail-fast-f4-90-prefix-at-fragment-end", fail_fast([b"ok ", b"\xf4\x90"]))
    run(g, "fail-fast-bad-continuation-across-fragments", fail_fast([b"ok \xce", b"\x28 not a continuation"]))
    run(g, "fail-fast-c0-in-first-fragment", fail_fast([b"\xc0"]))

    def fail_fast_inside_frame(size, bad):
        # Autobahn 6.4.3/6.4.4: one text frame arrives in pieces and an
        # early piece is already invalid. The 1007 must come before the rest
        # of the frame is sent (it never is here).
        def case(d):
            peer, _ = s.connect(d)
            valid = "κόσμε".encode()
            payload = (valid + bad).ljust(size, b"a")
            whole = peer.frame(OP_TEXT, payload)
            header = len(whole) - len(payload)
            peer.send_raw(whole[:header + len(valid)])
            peer.send_raw(whole[header + len(valid):header + len(valid) + len(bad)])
            expect_failure(peer, 1007, "waiting for 1007 while the frame is unfinished")
        return case
    for size in (64, 100 * 1024):
        run(g, f"fail-fast-inside-a-{size}-byte-frame-f4-90-80-80", fail_fast_inside_frame(size, b"\xf4\x90\x80\x80"))
        run(g, f"fail-fast-inside-a-{size}-byte-frame-f4-90", fail_fast_inside_frame(size, b"\xf4\x90"))

    def truncated_at_end(d):
        # Valid so far but incomplete when FIN arrives.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"abc\xf0\x9d", fin=False) + peer.frame(OP_CONT, b"\x84"))
        expect_failure(peer, 1007)
    run(g, "incomplete-character-at-fin-1007", truncated_at_end)

    def binary_not_checked(d):
        peer, _ = s.connect(d)
        peer.send_frame(OP_BINARY, b"\xff\xfe\xed\xa0\x80")
        expect_echo(peer, OP_BINARY, b"\xff\xfe\xed\xa0\x80")
        close_normally(peer)
    run(g, "binary-not-utf8-checked", binary_not_checked)


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def close_cases(run, s):
    g = "close"

    def echoed(code, reason=b"", expected=None, chop=None):
        expected = code if expected is None else expected

        def case(d):
            # RFC 6455 §5.5.1: a close frame is answered with a close frame,
            # "typically echoing the status code it received"; §7.1.1: then
            # the server closes TCP first.
            peer, _ = s.connect(d)
            peer.send_close(code, reason, chop=chop)
            f = expect_close(peer, expected, "waiting for the close echo")
            if code is not None:
                check(f.payload[2:] in (b"", reason), f"close reason {describe(f.payload[2:])}")
        return case
    for code in VALID_CLOSE_CODES:
        run(g, f"code-{code}-echoed", echoed(code))
    run(g, "empty-close-echoed-empty", echoed(None))
    run(g, "reason-echoed-code", echoed(1000, b"bye"))
    run(g, "reason-123-bytes", echoed(1000, b"r" * 123))
    run(g, "reason-multibyte-utf8", echoed(4000, "κόσμε 𝄞".encode()))
    run(g, "close-in-1-byte-writes", echoed(1000, b"slow", chop=1))

    def failing(payload, code):
        def case(d):
            peer, _ = s.connect(d)
            peer.send_frame(OP_CLOSE, payload)
            expect_failure(peer, code)
        return case
    # RFC 6455 §7.4: codes that may not be sent, or are not defined.
    for code in INVALID_CLOSE_CODES:
        run(g, f"invalid-code-{code}-1002", failing(struct.pack("!H", code), 1002))
    # RFC 6455 §5.5.1: a body starts with a 2-byte code.
    run(g, "payload-1-byte-1002", failing(b"\x03", 1002))
    run(g, "payload-126-bytes-1002", failing(struct.pack("!H", 1000) + b"r" * 124, 1002))
    # RFC 6455 §5.5.1/§8.1: the reason is UTF-8.
    run(g, "reason-invalid-utf8-1007", failing(struct.pack("!H", 1000) + b"\xed\xa0\x80", 1007))
    run(g, "reason-truncated-utf8-1007", failing(struct.pack("!H", 1000) + b"ok\xe2\x82", 1007))

    def data_after_close(d):
        # RFC 6455 §5.5.1: nothing may follow a close frame; whatever does is
        # not answered.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_CLOSE, struct.pack("!H", 1000)) + peer.frame(OP_TEXT, b"after close")
                      + peer.frame(OP_PING, b"after close"))
        expect_close(peer, 1000)
    run(g, "data-after-close-ignored", data_after_close)

    def server_closes_tcp(d):
        peer, _ = s.connect(d)
        peer.send_close(1000)
        f = peer.recv_frame("waiting for the close echo")
        check(f.opcode == OP_CLOSE and f.close_code() == 1000, f"expected close 1000, got {f}")
        t = time.monotonic()
        peer.expect_eof("after the close handshake (the server closes TCP first)")
        return f"TCP closed {1000 * (time.monotonic() - t):.1f} ms after the close echo"
    run(g, "server-closes-tcp-first", server_closes_tcp)

    def after_messages(d):
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"one") + peer.frame(OP_BINARY, b"two") + peer.frame(OP_CLOSE, struct.pack("!H", 1001)))
        expect_echo(peer, OP_TEXT, b"one")
        expect_echo(peer, OP_BINARY, b"two")
        expect_close(peer, 1001)
    run(g, "messages-echoed-before-close", after_messages)

    def big_message_then_close(d):
        # The whole echo leaves before the close echo, then TCP closes.
        peer, _ = s.connect(d)
        payload = binary_payload(min(s.max_size, 4 * MIB), 11)
        peer.send_raw(peer.frame(OP_BINARY, payload) + peer.frame(OP_CLOSE, struct.pack("!H", 1000)))
        expect_echo(peer, OP_BINARY, payload)
        expect_close(peer, 1000)
    run(g, "big-message-then-close-in-one-write", big_message_then_close, 6.0)

    def half_close(d):
        # The client shuts down its sending side right after its close frame:
        # the server still answers it.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_TEXT, b"last words") + peer.frame(OP_CLOSE, struct.pack("!H", 1000)))
        peer.sock.shutdown(socket.SHUT_WR)
        expect_echo(peer, OP_TEXT, b"last words")
        expect_close(peer, 1000)
    run(g, "close-then-half-close", half_close)

    def abrupt(how):
        def case(d):
            # No close handshake at all: the server must drop the connection
            # and go on serving others.
            peer, _ = s.connect(d)
            frame = peer.frame(OP_BINARY, b"z" * 1000)
            if how == "eof-mid-header":
                peer.send_raw(frame[:1])
            elif how == "eof-mid-payload":
                peer.send_raw(frame[:500])
            elif how == "eof-mid-message":
                peer.send_raw(peer.frame(OP_TEXT, b"open", fin=False))
            if how == "reset":
                peer.send_raw(frame[:500])
                peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()
            else:
                peer.sock.shutdown(socket.SHUT_WR)
                peer.expect_eof("after the client's end of stream")
                peer.close()
            other, _ = s.connect(d)
            other.send_frame(OP_TEXT, b"still serving")
            expect_echo(other, OP_TEXT, b"still serving")
            close_normally(other)
        return case
    for how in ("eof-mid-header", "eof-mid-payload", "eof-mid-message", "reset"):
        run(g, f"abrupt-{how}-then-serves-others", abrupt(how))


def concurrency_cases(run, s):
    g = "concurrency"

    def many(count, rounds):
        def case(d):
            peers = [s.connect(d)[0] for _ in range(count)]
            for r in range(rounds):
                sent = []
                for i, peer in enumerate(peers):
                    payload = text_payload(50 + (i * 37 + r * 101) % 3000, i * 1000 + r)
                    peer.send_frame(OP_TEXT, payload, chop="random")
                    sent.append(payload)
                for peer, payload in zip(reversed(peers), reversed(sent)):
                    expect_echo(peer, OP_TEXT, payload)
            for peer in peers:
                peer.send_close(1000)
            for peer in peers:
                expect_close(peer, 1000)
        return case
    run(g, "64-connections-interleaved", many(64, 5), 6.0)

    def sender_and_reader(d):
        # The client writes 32 MiB of messages while it reads the echoes: the
        # server's send queue fills and drains, nothing is lost or reordered.
        peer, _ = s.connect(d)
        size = min(s.max_size, MIB)
        messages = [binary_payload(size, i) for i in range(32)]
        wire = [peer.frame(OP_BINARY, m) for m in messages]
        failure = []

        def send():
            try:
                for w in wire:
                    peer.sock.sendall(w)
            except OSError as e:
                failure.append(e)
        thread = threading.Thread(target=send)
        thread.start()
        try:
            for m in messages:
                expect_echo(peer, OP_BINARY, m)
        finally:
            thread.join(d.left("waiting for the sender"))
        check(not failure, f"sending failed: {failure}")
        close_normally(peer)
    run(g, "32-messages-sent-while-reading", sender_and_reader, 15.0)


def limit_cases(run, s):
    g = "limits"
    n = s.max_size
    big = 40.0 if n > 4 * MIB else 6.0

    def at_limit(d):
        peer, _ = s.connect(d)
        payload = binary_payload(n, 7)
        third = n // 3
        peer.send_raw(peer.frame(OP_BINARY, payload[:third], fin=False)
                      + peer.frame(OP_CONT, payload[third:2 * third], fin=False)
                      + peer.frame(OP_CONT, payload[2 * third:]), "random")
        expect_echo(peer, OP_BINARY, payload)
        close_normally(peer)
    run(g, f"max-size-{n}-in-3-fragments-echoed", at_limit, big)

    def header_over_limit(d):
        # The limit is checked on the header: no need to send the payload.
        peer, _ = s.connect(d)
        peer.send_raw(peer.frame(OP_BINARY, b"", length=n + 1))
        expect_failure(peer, 1009, "waiting for 1009 (only the header was sent)")
    run(g, f"frame-of-max-size-plus-1-1009", header_over_limit)

    def fragments_over_limit(d):
        peer, _ = s.connect(d)
        half = n // 2
        peer.send_raw(peer.frame(OP_TEXT, b"a" * half, fin=False) + peer.frame(OP_CONT, b"b" * (n - half), fin=False)
                      + peer.frame(OP_CONT, b"c"))
        expect_failure(peer, 1009)
    run(g, f"fragments-adding-to-max-size-plus-1-1009", fragments_over_limit, big)

    def fragments(count, code):
        def case(d):
            peer, _ = s.connect(d)
            rng = random.Random(count)
            keys = [bytes(rng.getrandbits(8) for _ in range(4)) for _ in range(64)]
            out = bytearray(build_frame(OP_TEXT, b"f", fin=False, mask_key=keys[0]))
            for i in range(1, count):
                key = keys[i & 63]
                out += bytes([0x80 if i == count - 1 else 0x00, 0x81]) + key + bytes([ord("f") ^ key[0]])
            peer.send_raw(out)
            if code is None:
                expect_echo(peer, OP_TEXT, b"f" * count)
                close_normally(peer)
            else:
                expect_failure(peer, code)
        return case
    m = s.max_fragments
    if m <= s.max_size:
        run(g, f"{m}-fragments-echoed", fragments(m, None), 10.0)
    run(g, f"{m + 1}-fragments-1009", fragments(m + 1, 1009), 10.0)


# ---- permessage-deflate -----------------------------------------------------------


def check_deflate_answer(offer, fields):
    """RFC 7692 §7.1: the answer to one of the permessage-deflate offers in
    `offer` (a header value). Returns the agreed parameters as (server window
    bits, server takeover, client window bits, client takeover)."""
    answers = parse_extensions(fields.get("sec-websocket-extensions", []))
    check(len(answers) == 1, f"expected one extension in the answer, got {answers}")
    name, params = answers[0]
    check(name == "permessage-deflate", f"answered extension {name!r}")
    problems = []
    for offered_name, offered in parse_extensions([offer]):
        if offered_name != "permessage-deflate":
            continue
        try:
            return check_deflate_params(offered, params)
        except CaseFailed as e:
            problems.append(str(e))
    raise CaseFailed(f"the answer {params} fits no offer: {'; '.join(problems)}")


def check_deflate_params(offered, params):
    known = {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
             "client_max_window_bits"}
    check(set(params) <= known, f"unknown parameters in the answer: {params}")
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        check(params.get(flag, None) is None, f"{flag} with a value")
    # RFC 7692 §7.1.1.1: an offered server_no_context_takeover must be answered.
    if "server_no_context_takeover" in offered:
        check("server_no_context_takeover" in params, "server_no_context_takeover offered but not answered")
    server_bits = 15
    if "server_max_window_bits" in params:
        server_bits = int(params["server_max_window_bits"])
        check(8 <= server_bits <= 15, f"server_max_window_bits={server_bits}")
    # RFC 7692 §7.1.2.1: an offered server_max_window_bits is answered with
    # the same or a smaller value.
    if offered.get("server_max_window_bits"):
        check("server_max_window_bits" in params, "server_max_window_bits offered but not answered")
        check(server_bits <= int(offered["server_max_window_bits"]), f"server_max_window_bits={server_bits} above the offer")
    client_bits = int(offered["client_max_window_bits"]) if offered.get("client_max_window_bits") else 15
    # RFC 7692 §7.1.2.2: client_max_window_bits only when offered, no larger.
    if "client_max_window_bits" in params:
        check("client_max_window_bits" in offered, "client_max_window_bits answered but not offered")
        check(params["client_max_window_bits"] is not None, "client_max_window_bits answered without a value")
        value = int(params["client_max_window_bits"])
        check(8 <= value <= client_bits, f"client_max_window_bits={value} above the offer ({client_bits})")
        client_bits = value
    client_takeover = "client_no_context_takeover" not in params and "client_no_context_takeover" not in offered
    return server_bits, "server_no_context_takeover" not in params, client_bits, client_takeover


class DeflatePeer:
    """Our side of a permessage-deflate connection."""

    def __init__(self, peer, agreed):
        self.peer = peer
        self.server_bits, self.server_takeover, self.client_bits, self.client_takeover = agreed
        self.compressor = None
        self.decompressor = None
        self.compressed_echoes = 0

    def compress(self, data):
        if self.compressor is None or not self.client_takeover:
            if self.client_bits == 8:
                # zlib cannot compress with a 256-byte window; Z_RLE only
                # matches at distance 1, which fits any window.
                self.compressor = zlib.compressobj(6, zlib.DEFLATED, -9, 8, zlib.Z_RLE)
            else:
                self.compressor = zlib.compressobj(6, zlib.DEFLATED, -self.client_bits)
        return deflate_message(self.compressor, data)

    def send(self, opcode, data, compress=True, fragments=1):
        body = self.compress(data) if compress else data
        if fragments == 1:
            self.peer.send_frame(opcode, body, rsv=RSV1 if compress else 0)
            return
        size = max(1, len(body) // fragments)
        pieces = [body[i * size:(i + 1) * size] for i in range(fragments - 1)] + [body[(fragments - 1) * size:]]
        self.peer.send_raw(b"".join(
            self.peer.frame(opcode if i == 0 else OP_CONT, p, fin=i == fragments - 1,
                            rsv=RSV1 if compress and i == 0 else 0) for i, p in enumerate(pieces)))

    def receive(self, what="waiting for the echo"):
        op, payload, rsv, frames = read_message(self.peer, what)
        check(rsv in (0, RSV1), f"RSV bits {rsv:#x} on the echo")
        if rsv == RSV1:
            self.compressed_echoes += 1
            if self.decompressor is None or not self.server_takeover:
                # A fresh inflater per message when the server may not keep
                # its context: a back reference into an earlier message fails.
                self.decompressor = zlib.decompressobj(-self.server_bits)
            payload = inflate_message(self.decompressor, payload)
        return op, payload

    def expect_echo(self, opcode, data):
        op, got = self.receive()
        check(op == opcode, f"echo opcode {op}, expected {opcode}")
        check(got == data, f"echo differs: got {describe(got)}, sent {describe(data)}")


def deflate_messages(window_bits):
    """Messages of many sizes and kinds; some repeat earlier ones (context
    takeover pays), some repeat a block from further back than the window
    (a compressor that ignores its window limit is caught)."""
    block = binary_payload((1 << window_bits) + 600, window_bits)
    out = []
    for i, n in enumerate([0, 1, 63, 64, 125, 126, 1000, 4096, 65535, 65536, 200000]):
        out.append((OP_TEXT, text_payload(n, i), True))
        out.append((OP_BINARY, (b"abcdefgh" * (n // 8 + 1))[:n], i % 3 != 2))
    out.append((OP_TEXT, text_payload(3000, 99), True))
    out.append((OP_TEXT, text_payload(3000, 99), True))
    out.append((OP_BINARY, block + block + block, True))
    out.append((OP_BINARY, block, True))  # a repeat from the previous message
    out.append((OP_BINARY, binary_payload(5000, 5), True))  # incompressible
    return out


def deflate_cases(run, s):
    g = "deflate"
    if not s.deflate:
        def declined(d):
            peer, fields = s.connect(d, extensions="permessage-deflate")
            check("sec-websocket-extensions" not in fields, "permessage-deflate accepted by a server without it")
            close_normally(peer)
        run(g, "declined-without-deflate", declined)
        return

    def data_case(offer):
        def case(d):
            peer, fields = s.connect(d, extensions=offer)
            agreed = check_deflate_answer(offer, fields)
            dp = DeflatePeer(peer, agreed)
            messages = deflate_messages(agreed[0])
            for opcode, data, compress in messages:
                dp.send(opcode, data, compress)
                dp.expect_echo(opcode, data)
            close_normally(peer)
            return (f"agreed {fields['sec-websocket-extensions'][0]!r}; "
                    f"{dp.compressed_echoes}/{len(messages)} echoes compressed")
        return case

    offers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; server_no_context_takeover; client_no_context_takeover",
    ]
    offers += [f"permessage-deflate; client_max_window_bits; server_max_window_bits={n}" for n in range(9, 16)]
    offers += [f"permessage-deflate; server_max_window_bits={n}" for n in (8, 9, 15)]
    offers += [f"permessage-deflate; client_max_window_bits={n}" for n in (8, 9, 12, 15)]
    offers += ["x-unknown-extension, permessage-deflate; client_max_window_bits",
               "permessage-deflate; server_max_window_bits=10, permessage-deflate"]
    for offer in offers:
        name = offer.replace("permessage-deflate", "pmd").replace("; ", "+").replace(", ", "|").replace(" ", "")
        run(g, f"echo[{name}]", data_case(offer), 8.0)

    def declined(offer):
        # RFC 7692 §7.1: an offer with an unknown or invalid parameter, or a
        # repeated one, is declined; then RSV1 means nothing and fails.
        def case(d):
            peer, fields = s.connect(d, extensions=offer)
            check("sec-websocket-extensions" not in fields,
                  f"accepted an offer it must decline: {fields.get('sec-websocket-extensions')}")
            peer.send_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=RSV1)
            expect_failure(peer, 1002)
        return case
    run(g, "decline-unknown-parameter", declined("permessage-deflate; foo=1"))
    run(g, "decline-server-window-16", declined("permessage-deflate; server_max_window_bits=16"))
    run(g, "decline-client-window-7", declined("permessage-deflate; client_max_window_bits=7"))
    run(g, "decline-window-bits-not-a-number", declined("permessage-deflate; server_max_window_bits=ten"))
    run(g, "decline-repeated-parameter",
        declined("permessage-deflate; server_no_context_takeover; server_no_context_takeover"))
    run(g, "decline-takeover-with-value", declined("permessage-deflate; client_no_context_takeover=1"))

    def connect(d, offer="permessage-deflate"):
        peer, fields = s.connect(d, extensions=offer)
        return peer, DeflatePeer(peer, check_deflate_answer(offer, fields))

    def rfc_example(frames, expected):
        # RFC 7692 §7.2.3: the examples' bytes, masked, must inflate to "Hello".
        def case(d):
            peer, dp = connect(d)
            for wire in frames:
                first, second = wire[0], wire[1]
                peer.send_frame(first & 0x0F, wire[2:2 + second], fin=bool(first & 0x80), rsv=first & 0x70)
            for data in expected:
                dp.expect_echo(OP_TEXT, data)
            close_normally(peer)
        return case
    h = bytes.fromhex
    run(g, "rfc7692-7.2.3.1-one-frame", rfc_example([h("c107f248cdc9c90700")], [b"Hello"]))
    run(g, "rfc7692-7.2.3.1-fragmented", rfc_example([h("4103f248cd"), h("8004c9c90700")], [b"Hello"]))
    run(g, "rfc7692-7.2.3.2-shared-window",
        rfc_example([h("c107f248cdc9c90700"), h("c105f200110000")], [b"Hello", b"Hello"]))
    run(g, "rfc7692-7.2.3.3-stored-block", rfc_example([h("c10b000500faff48656c6c6f00")], [b"Hello"]))
    run(g, "rfc7692-7.2.3.4-bfinal", rfc_example([h("c108f348cdc9c9070000")], [b"Hello"]))
    run(g, "rfc7692-7.2.3.5-two-blocks", rfc_example([h("c10df24805000000ffffcac9c90700")], [b"Hello"]))

    def bfinal_then_more(d):
        peer, dp = connect(d)
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        peer.send_frame(OP_TEXT, c.compress(b"final block " * 20) + c.flush(zlib.Z_FINISH), rsv=RSV1)
        dp.expect_echo(OP_TEXT, b"final block " * 20)
        dp.compressor = None  # a fresh compressor after BFINAL
        dp.send(OP_TEXT, b"next message " * 20)
        dp.expect_echo(OP_TEXT, b"next message " * 20)
        close_normally(peer)
    run(g, "bfinal-block-then-another-message", bfinal_then_more)

    def fragmented(d):
        peer, dp = connect(d)
        data = text_payload(100000, 3)
        dp.send(OP_TEXT, data, fragments=5)
        dp.expect_echo(OP_TEXT, data)
        close_normally(peer)
    run(g, "compressed-message-in-5-fragments", fragmented, 4.0)

    def odd_fragments(d):
        # RSV1 on an empty first frame, the data in continuations, one byte
        # each, with empty ones and a ping among them.
        peer, dp = connect(d)
        data = text_payload(400, 8)
        body = dp.compress(data)
        wire = peer.frame(OP_TEXT, b"", fin=False, rsv=RSV1)
        for i, b in enumerate(body):
            wire += peer.frame(OP_CONT, bytes([b]), fin=False)
            if i == 3:
                wire += peer.frame(OP_CONT, b"", fin=False) + peer.frame(OP_PING, b"mid")
        wire += peer.frame(OP_CONT, b"")
        peer.send_raw(wire)
        f = peer.recv_frame("waiting for the pong")
        check(f.opcode == OP_PONG and f.payload == b"mid", f"expected pong 'mid', got {f}")
        dp.expect_echo(OP_TEXT, data)
        close_normally(peer)
    run(g, "compressed-message-in-1-byte-fragments-with-ping", odd_fragments)

    def empty(d):
        peer, dp = connect(d)
        dp.send(OP_BINARY, b"")
        dp.expect_echo(OP_BINARY, b"")
        peer.send_frame(OP_TEXT, b"\x00", rsv=RSV1)  # RFC 7692 §7.2.3.6: an empty block
        dp.expect_echo(OP_TEXT, b"")
        close_normally(peer)
    run(g, "compressed-empty-messages", empty)

    def pipelined(d):
        peer, dp = connect(d, "permessage-deflate; client_max_window_bits")
        messages = [text_payload(100 + 50 * i, i % 7) for i in range(50)]
        peer.send_raw(b"".join(peer.frame(OP_TEXT, dp.compress(m), rsv=RSV1) for m in messages))
        for m in messages:
            dp.expect_echo(OP_TEXT, m)
        close_normally(peer)
    run(g, "50-compressed-messages-in-one-write", pipelined)

    def bytewise(d):
        peer, dp = connect(d)
        data = text_payload(300, 1)
        peer.send_frame(OP_TEXT, dp.compress(data), rsv=RSV1, chop=1)
        dp.expect_echo(OP_TEXT, data)
        close_normally(peer)
    run(g, "compressed-message-in-1-byte-writes", bytewise)

    def incompressible_at_limit(d):
        # Random bytes grow a little when compressed: a message of exactly
        # the limit arrives in a frame a little over it, and is still a
        # message within the limit.
        peer, dp = connect(d)
        data = binary_payload(s.max_size, 21)
        dp.send(OP_BINARY, data)
        dp.expect_echo(OP_BINARY, data)
        close_normally(peer)
    # Python compresses and inflates 16 MiB of noise slowly on a busy machine:
    # the bound is generous, the server answers in a few seconds.
    run(g, f"incompressible-max-size-{s.max_size}-echoed", incompressible_at_limit, 60.0 if s.max_size > 4 * MIB else 8.0)

    def fail_fast(send, code):
        def case(d):
            peer, dp = connect(d)
            send(peer, dp)
            expect_failure(peer, code, f"waiting for {code} before the final fragment")
        return case

    def invalid_in_unfinished(peer, dp):
        # The first fragment inflates to invalid UTF-8 on its own.
        dp.compressor = zlib.compressobj(6, zlib.DEFLATED, -dp.client_bits)
        body = dp.compressor.compress(b"valid, then \xed\xa0\x80") + dp.compressor.flush(zlib.Z_SYNC_FLUSH)
        peer.send_frame(OP_TEXT, body, fin=False, rsv=RSV1)
    run(g, "fail-fast-compressed-invalid-utf8-in-first-fragment-1007", fail_fast(invalid_in_unfinished, 1007))

    def bomb_in_unfinished(peer, dp):
        dp.compressor = zlib.compressobj(9, zlib.DEFLATED, -dp.client_bits)
        body = dp.compressor.compress(b"\x00" * (s.max_size + 1)) + dp.compressor.flush(zlib.Z_SYNC_FLUSH)
        peer.send_frame(OP_BINARY, body, fin=False, rsv=RSV1)
    run(g, "fail-fast-compressed-over-max-size-in-first-fragment-1009", fail_fast(bomb_in_unfinished, 1009),
        20.0 if s.max_size > 4 * MIB else 4.0)

    def failing(send, code):
        def case(d):
            peer, dp = connect(d)
            send(peer, dp)
            expect_failure(peer, code)
        return case
    # RFC 7692 §6.1: RSV1 is for the first frame of a data message only.
    run(g, "rsv1-on-ping-1002", failing(lambda p, dp: p.send_frame(OP_PING, b"x", rsv=RSV1), 1002))
    run(g, "rsv1-on-pong-1002", failing(lambda p, dp: p.send_frame(OP_PONG, b"x", rsv=RSV1), 1002))
    run(g, "rsv1-on-close-1002",
        failing(lambda p, dp: p.send_frame(OP_CLOSE, struct.pack("!H", 1000), rsv=RSV1), 1002))
    run(g, "rsv1-on-continuation-1002", failing(
        lambda p, dp: p.send_raw(p.frame(OP_TEXT, b"plain ", fin=False) + p.frame(OP_CONT, b"\x00", rsv=RSV1)), 1002))

    def rsv1_on_second_continuation(p, dp):
        body = dp.compress(b"compressed " * 10)
        p.send_raw(p.frame(OP_TEXT, body[:4], fin=False, rsv=RSV1) + p.frame(OP_CONT, body[4:], rsv=RSV1))
    run(g, "rsv1-on-continuation-of-compressed-1002", failing(rsv1_on_second_continuation, 1002))
    run(g, "rsv2-with-deflate-1002", failing(lambda p, dp: p.send_frame(OP_TEXT, b"x", rsv=RSV2), 1002))
    run(g, "corrupt-deflate-data-1002",
        failing(lambda p, dp: p.send_frame(OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=RSV1), 1002))
    run(g, "compressed-invalid-utf8-1007",
        failing(lambda p, dp: p.send_frame(OP_TEXT, dp.compress(b"ok \xed\xa0\x80"), rsv=RSV1), 1007))

    # RFC 7692 §8: the inflated size is bounded too (a small frame may
    # inflate to far more than the limit).
    n = s.max_size

    def at_limit(d):
        peer, dp = connect(d)
        dp.send(OP_BINARY, b"\x00" * n)
        dp.expect_echo(OP_BINARY, b"\x00" * n)
        close_normally(peer)
    run(g, f"inflates-to-max-size-{n}-echoed", at_limit, 20.0 if n > 4 * MIB else 4.0)
    run(g, f"inflates-to-max-size-plus-1-1009",
        failing(lambda p, dp: dp.send(OP_BINARY, b"\x00" * (n + 1)), 1009), 20.0 if n > 4 * MIB else 4.0)


def shutdown_cases(run, s, process, command, time_scale, server_log):
    """SIGTERM: every open WebSocket gets close 1001, the server exits 0
    promptly. Only with --server-cmd (the suite owns the process)."""
    g = "shutdown"

    def sigterm(d, server, proc):
        peer, _ = server.connect(d)
        peer.send_frame(OP_TEXT, b"still here")
        expect_echo(peer, OP_TEXT, b"still here")
        os.kill(proc.pid, signal.SIGTERM)
        f = peer.recv_frame("waiting for close 1001 after SIGTERM")
        check(f.opcode == OP_CLOSE and f.close_code() == 1001, f"expected close 1001, got {f}")
        peer.try_send(peer.frame(OP_CLOSE, struct.pack("!H", 1001)))
        peer.expect_eof("after the server's close")
        return peer

    def wait_exit(d, proc):
        t = time.monotonic()
        try:
            status = proc.wait(d.left("waiting for the server to exit"))
        except Exception:
            raise CaseFailed(f"the server had not exited {time.monotonic() - t:.1f} s after SIGTERM")
        check(status == 0, f"the server exited with status {status}")

    def main_server(d):
        sigterm(d, s, process)
        wait_exit(d, process)
    run(g, "sigterm-closes-clients-with-1001-and-exits-0", main_server, 5.0)

    def with_pending_handshakes(d):
        # Connections that have not finished their opening handshake hold
        # nothing worth waiting for: they must not delay the exit.
        proc, port = start_process(command, "a second server", 30 * time_scale, server_log)
        try:
            server = Server(s.host, port, s.max_size, s.max_fragments, s.deflate, s.seed)
            silent = server.open_tcp(d)
            partial = server.open_tcp(d)
            partial.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            peer, _ = server.connect(d)
            time.sleep(0.05)  # let the server take the connections in
            os.kill(proc.pid, signal.SIGTERM)
            f = peer.recv_frame("waiting for close 1001 after SIGTERM")
            check(f.opcode == OP_CLOSE and f.close_code() == 1001, f"expected close 1001, got {f}")
            peer.try_send(peer.frame(OP_CLOSE, struct.pack("!H", 1001)))
            peer.expect_eof("after the server's close")
            t = time.monotonic()
            wait_exit(d, proc)
            for other in (silent, partial):
                other.expect_eof("on a connection still in its handshake")
            return f"exited {time.monotonic() - t:.2f} s after the last WebSocket closed"
        finally:
            stop_process(proc, 2 * time_scale)
    # Capped at 8 s however slow the server: the handshake (open) timeout is
    # 10 s, and waiting for it is the failure this case is about.
    run(g, "sigterm-with-handshakes-pending-exits-promptly", with_pending_handshakes,
        min(3.0 * time_scale, 8.0) / time_scale)


GROUPS = [("handshake", handshake_cases), ("framing", framing_cases), ("ping-pong", ping_cases),
          ("reserved", reserved_cases), ("fragmentation", fragmentation_cases), ("utf8", utf8_cases),
          ("close", close_cases),
          ("concurrency", concurrency_cases), ("limits", limit_cases), ("deflate", deflate_cases)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server-cmd", help="start this server (it prints 'listening on HOST:PORT')")
    where.add_argument("--port", type=int, help="test a server already running on this port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--server-max-size", type=int,
                        help="the server's message size limit (default: --max-size in the command, else 1 MiB)")
    parser.add_argument("--server-max-fragments", type=int, default=100000,
                        help="the server's fragments-per-message limit (default 100000)")
    parser.add_argument("--no-deflate", action="store_true", help="the server has permessage-deflate off")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="multiply every time bound (for slow servers, e.g. under valgrind)")
    parser.add_argument("--hard-bound", type=float, default=5.0, help="longest single wait, in seconds")
    parser.add_argument("--seed", type=int, default=6455)
    parser.add_argument("--only", action="append", help="run only cases whose group/name contains this")
    parser.add_argument("--verbose", action="store_true", help="print each case's note")
    args = parser.parse_args()

    max_size = args.server_max_size
    command = shlex.split(args.server_cmd) if args.server_cmd else None
    if max_size is None:
        max_size = MIB
        if command and "--max-size" in command:
            max_size = int(command[command.index("--max-size") + 1])
    if command and "--no-deflate" in command:
        args.no_deflate = True

    process, port = None, args.port
    # The server's stderr (its log, and any sanitizer report) goes to a file,
    # shown when something failed.
    server_log = tempfile.TemporaryFile() if command else None
    if command:
        try:
            process, port = start_process(command, os.path.basename(command[0]), 30 * args.time_scale, server_log)
        except (RuntimeError, OSError) as e:
            print(f"cannot start the server: {e}", file=sys.stderr)
            print("0 passed, 1 failed")
            return 1
        print(f"server: {args.server_cmd} (pid {process.pid}) on port {port}", flush=True)

    server = Server(args.host, port, max_size, args.server_max_fragments, not args.no_deflate, args.seed)
    runner = Runner(args.time_scale, args.hard_bound, args.only, args.verbose)
    try:
        for _, add in GROUPS:
            add(runner, server)
        if process is not None:
            shutdown_cases(runner, server, process, command, args.time_scale, server_log)
    finally:
        if process is not None:
            stop_process(process, 10 * args.time_scale)
    if server_log is not None:
        server_log.seek(0)
        lines = server_log.read().decode("utf-8", "replace").splitlines()
        reports = [line for line in lines if "Sanitizer" in line or "runtime error" in line]

        def no_reports(d):
            check(not reports, f"{len(reports)} sanitizer report line(s), first: {reports[0] if reports else ''}")
        runner.only = None  # always checked
        runner.run("server", "stderr-has-no-sanitizer-report", no_reports)
        if any(r[2] == "fail" for r in runner.results):
            print(f"\nthe server's stderr (last 40 of {len(lines)} lines):")
            print("\n".join("  " + line for line in lines[-40:]))
    return 0 if runner.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
