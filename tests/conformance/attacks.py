#!/usr/bin/env python3
"""Hostile-peer resource tests: attacks on a WebSocket echo server over loopback.

Each case starts the server with the flags it needs (port 0, the port read
from its "listening on HOST:PORT" line), connects a well-behaved client that
sends a message every 20 ms for the whole case and fails the case if an echo
is late or lost, samples the server's VmRSS from /proc every few ms, and then
attacks:

  slowloris          50 clients send their handshakes a byte every 0.5 s;
                     the server (--open-timeout 2000) drops them at 2 s, not
                     before.
  huge-frame-length  a frame header declaring a 2^62-byte payload: close 1009
                     at once, and no memory grows.
  deflate-bomb       permessage-deflate, ~64 KiB that inflate to 64 MiB of
                     zeros against --max-size 1048576: close 1009, memory
                     bounded.
  ping-flood         200,000 pings (125-byte payloads) sent as fast as the
                     server takes them, nothing read meanwhile: far fewer
                     pongs come back, in order, the last one for the last ping.
  fragment-flood     --max-fragments 1000: a 1000-frame message is echoed, a
                     1001-frame one gets 1009, and a flood of 1-byte
                     continuation frames gets 1009.
  never-reads        a peer sends 64 KiB messages and reads nothing: the
                     server stops reading it (its sends stall, memory stays
                     bounded) and its keepalive (--ping-interval 500
                     --ping-timeout 500 --close-timeout 500) ends the TCP
                     connection.
  10k-connections    10,000 WebSockets open at once (fewer if RLIMIT_NOFILE's
                     hard limit is too low; said so), each echoes one message.
  max-connections    --max-connections 100: with 100 open (the well-behaved
                     client among them) the next gets 503 with Retry-After;
                     after one closes, a new one is accepted.

    attacks.py --server-cmd "build/examples/echo_server --port 0" [--verbose]
    attacks.py --server-cmd "build-asan/examples/echo_server --port 0" --time-scale 4

Every wait is bounded and every bound stretches with --time-scale. Against a
sanitizer build (found in the binary, or --sanitized yes) the memory bounds
are reported but not checked: AddressSanitizer's shadow memory and
quarantine make RSS say little about the server's own buffers.

Prints one line per case with its numbers, a table, and `N passed, N
failed`; exits 1 if any case failed. Standard library only; Linux (/proc).
"""

import argparse
import os
import random
import re
import resource
import select
import selectors
import shlex
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawws import (  # noqa: E402
    DEFLATE_TAIL, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1,
    CaseFailed, Deadline, Peer, accept_key, build_frame, check, describe,
    mask_bytes, parse_extensions, parse_head, start_process, stop_process,
)

KIB, MIB = 1 << 10, 1 << 20
HOST = "127.0.0.1"
REQUEST_KEY = "x3JJHMbDL1EzLkh9GBhXDw=="


# ---- measuring -------------------------------------------------------------------


def read_status(pid):
    """(VmRSS, VmHWM) of a process in bytes, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rss = re.search(rb"VmRSS:\s+(\d+) kB", text)
    hwm = re.search(rb"VmHWM:\s+(\d+) kB", text)
    if not rss or not hwm:
        return None
    return int(rss.group(1)) * KIB, int(hwm.group(1)) * KIB


class RssSampler(threading.Thread):
    """Samples the server's VmRSS every few ms; `peak` is the largest since
    the last mark_baseline()."""

    def __init__(self, pid, period=0.003):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.current = self.peak = self.hwm = 0
        self.samples = 0
        first = read_status(pid)
        if first:
            self.current = self.peak = first[0]
            self.hwm = first[1]

    def run(self):
        while not self.stop_event.is_set():
            status = read_status(self.pid)
            if status is None:
                break
            with self.lock:
                self.current, self.hwm = status
                self.peak = max(self.peak, status[0])
                self.samples += 1
            self.stop_event.wait(self.period)

    def mark_baseline(self):
        status = read_status(self.pid)
        with self.lock:
            if status:
                self.current, self.hwm = status
            self.peak = self.current
            return self.current

    def now(self):
        status = read_status(self.pid)
        with self.lock:
            if status:
                self.current, self.hwm = status
                self.peak = max(self.peak, status[0])
            return self.current

    def stop(self):
        self.now()
        self.stop_event.set()
        self.join(2.0)


def mib(n):
    return f"{n / MIB:.1f}"


# ---- raw WebSocket helpers ----------------------------------------------------------


def upgrade_request(port, extensions=None, key=REQUEST_KEY):
    lines = [f"GET / HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_ws(port, d, rng, extensions=None, rcvbuf=None):
    """A WebSocket client whose handshake is done: (Peer, response fields).
    `rcvbuf` shrinks the socket's receive buffer (set before connecting, so
    that the advertised window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(d.left("connecting"))
        sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    peer = Peer(sock, d, rng, masking=True)
    try:
        peer.send_raw(upgrade_request(port, extensions))
        status, fields = parse_head(peer.read_until(b"\r\n\r\n", "waiting for the handshake response"))
        check(status.startswith("HTTP/1.1 101"), f"handshake answered {status!r}")
        check(fields.get("sec-websocket-accept") == [accept_key(REQUEST_KEY)], "wrong Sec-WebSocket-Accept")
    except BaseException:
        peer.close()
        raise
    return peer, fields


def parse_server_frames(buffer):
    """Whole unmasked frames at the front of a bytearray: [(fin, rsv,
    opcode, payload)], consumed from it."""
    frames = []
    at = 0
    n = len(buffer)
    while n - at >= 2:
        b0, b1 = buffer[at], buffer[at + 1]
        check(not b1 & 0x80, "the server masked a frame")
        length, head = b1 & 0x7F, 2
        if length == 126:
            if n - at < 4:
                break
            length, head = struct.unpack_from("!H", buffer, at + 2)[0], 4
        elif length == 127:
            if n - at < 10:
                break
            length, head = struct.unpack_from("!Q", buffer, at + 2)[0], 10
        if n - at < head + length:
            break
        frames.append((bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, bytes(buffer[at + head:at + head + length])))
        at += head + length
    del buffer[:at]
    return frames


def close_code_of(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def hard_close(sock):
    """Closes with a reset (SO_LINGER 0): no TIME_WAIT left behind."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def polite_close(peer, timeout):
    """Sends close 1000, waits (bounded) for the answer and EOF, closes."""
    try:
        peer.deadline = Deadline(timeout, timeout)
        peer.send_close(1000)
        while True:
            f = peer.recv_frame("waiting for the close answer")
            if f.opcode == OP_CLOSE:
                break
        peer.expect_eof()
    except (CaseFailed, OSError):
        pass
    peer.close()


# ---- the well-behaved client ------------------------------------------------------


class Probe(threading.Thread):
    """A well-behaved client on the attacked server: a text message every
    `period` s, each echo awaited at most `bound` s. A late or lost echo ends
    it with `failure` set."""

    def __init__(self, port, bound, period=0.02):
        super().__init__(daemon=True)
        self.port, self.bound, self.period = port, bound, period
        self.stop_event = threading.Event()
        self.count = 0
        self.max_latency = 0.0
        self.failure = None
        self.ready = threading.Event()

    def run(self):
        peer = None
        index = 0
        try:
            d = Deadline(5 * self.bound, 5 * self.bound)
            peer, _ = open_ws(self.port, d, random.Random(6455))
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                payload = f"well-behaved message {index}".encode()
                peer.deadline = Deadline(self.bound, self.bound)
                sent_at = time.monotonic()
                peer.send_frame(OP_TEXT, payload)
                while True:
                    f = peer.recv_frame(f"waiting for the echo of message {index}")
                    if f.opcode == OP_PING:  # keepalive: answer it
                        peer.send_frame(OP_PONG, f.payload)
                        continue
                    break
                latency = time.monotonic() - sent_at
                check(f.opcode == OP_TEXT and f.payload == payload, f"message {index} echoed as {f}")
                check(latency <= self.bound, f"echo {index} late: {latency:.3f} s")
                self.count += 1
                self.max_latency = max(self.max_latency, latency)
                if self.count >= 3:
                    self.ready.set()
                index += 1
                next_at = max(next_at + self.period, time.monotonic())
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        except CaseFailed as e:
            self.failure = f"well-behaved client, message {index}: {e}"
        except OSError as e:
            self.failure = f"well-behaved client, message {index}: {type(e).__name__}: {e}"
        finally:
            self.ready.set()
            if peer is not None:
                polite_close(peer, self.bound)

    def stop(self):
        self.stop_event.set()
        self.join(5 * self.bound + 1)


# ---- the case runner ----------------------------------------------------------------


class Context:
    """What a case body gets: the server's port and pid, its deadline, the
    RSS sampler, the time scale, and places for its numbers."""

    def __init__(self, port, pid, d, sampler, scale, sanitized, log):
        self.port, self.pid, self.d = port, pid, d
        self.sampler, self.scale, self.sanitized = sampler, scale, sanitized
        self.log = log
        self.rng = random.Random(zlib.crc32(d.name.encode()))
        self.close_time = None  # seconds, the case's "time to close"
        self.notes = []
        self.rss_bound = None  # bytes over the baseline
        self.baseline = 0

    def note(self, text):
        self.notes.append(text)

    def server_log_lines(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace").splitlines()


class Result:
    __slots__ = ("name", "status", "close_time", "baseline", "peak", "hwm", "echoes", "max_latency", "detail")


class AttackRunner:
    def __init__(self, args, command, sanitized):
        self.args = args
        self.command = command
        self.scale = args.time_scale
        self.sanitized = sanitized
        self.results = []

    def selected(self, name):
        return not self.args.only or any(p in name for p in self.args.only)

    def run(self, name, flags, body, budget):
        """Starts the server with `flags`, the sampler and the probe, runs
        body(ctx) within budget * time_scale seconds, then checks the probe,
        the memory bound, the server's stderr and its exit on SIGTERM."""
        if not self.selected(name):
            return
        scale = self.scale
        r = Result()
        r.name, r.status, r.close_time, r.detail = name, "pass", None, ""
        r.baseline = r.peak = r.hwm = r.echoes = 0
        r.max_latency = 0.0
        log = tempfile.TemporaryFile()
        process = sampler = probe = None
        ctx = None
        failures = []
        try:
            process, port = start_process(self.command + flags, "the server", 30 * scale, log)
            sampler = RssSampler(process.pid)
            sampler.start()
            probe = Probe(port, 1.0 * scale)
            probe.start()
            if not probe.ready.wait(5 * scale) or probe.failure:
                raise CaseFailed(probe.failure or "the well-behaved client got no echoes before the attack")
            d = Deadline(budget * scale, budget * scale, name)
            ctx = Context(port, process.pid, d, sampler, scale, self.sanitized, log)
            ctx.baseline = sampler.mark_baseline()
            body(ctx)
            time.sleep(0.1)  # the well-behaved client goes on a little after the attack
        except CaseFailed as e:
            failures.append(str(e))
        except (OSError, ValueError, RuntimeError, struct.error, zlib.error) as e:
            failures.append(f"{type(e).__name__}: {e}")
        finally:
            if probe is not None:
                probe.stop()
                r.echoes, r.max_latency = probe.count, probe.max_latency
                if probe.failure and not any(probe.failure in f for f in failures):
                    failures.append(probe.failure)
                elif probe.is_alive():
                    failures.append("the well-behaved client did not finish")
            if sampler is not None:
                sampler.stop()
                r.baseline = ctx.baseline if ctx else sampler.current
                r.peak, r.hwm = sampler.peak, sampler.hwm
            if process is not None:
                alive = process.poll() is None
                if not alive:
                    failures.append(f"the server died during the case (status {process.returncode})")
                status = stop_process(process, 5 * scale)
                if alive and status != 0:
                    failures.append(f"the server did not exit 0 on SIGTERM after the case (status {status})")
        if ctx is not None:
            r.close_time = ctx.close_time
            if ctx.rss_bound is not None:
                grown = r.peak - r.baseline
                if self.sanitized:
                    ctx.note(f"RSS bound +{mib(ctx.rss_bound)} MiB not checked (sanitizer build)")
                elif grown > ctx.rss_bound:
                    failures.append(f"server RSS grew {mib(grown)} MiB over its baseline, bound {mib(ctx.rss_bound)} MiB")
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").splitlines()
        log.close()
        reports = [line for line in lines if "Sanitizer" in line or "runtime error" in line]
        if reports:
            failures.append(f"{len(reports)} sanitizer report line(s), first: {reports[0]}")
        if failures:
            r.status = "fail"
            r.detail = "; ".join(failures)
        if ctx is not None and ctx.notes:
            r.detail = (r.detail + "; " if r.detail else "") + "; ".join(ctx.notes)
        if failures and self.args.verbose and lines:
            r.detail += "\n    server stderr (last 10 lines):\n" + "\n".join("      " + x for x in lines[-10:])
        self.results.append(r)
        close = f"{r.close_time * 1000:.1f} ms" if r.close_time is not None else "-"
        line = (f"{r.status.upper():4}  {name:<18} close {close:>9}  rss {mib(r.baseline)} -> peak "
                f"{mib(r.peak)} MiB (hwm {mib(r.hwm)})  well-behaved {r.echoes} echoes, max "
                f"{r.max_latency * 1000:.1f} ms")
        if r.detail and (r.status != "pass" or self.args.verbose):
            line += f"\n      {r.detail}"
        print(line, flush=True)

    def summary(self):
        print()
        print(f"{'case':<18}  {'outcome':<7}  {'time ms':>8}  {'base MiB':>8}  {'peak MiB':>8}  "
              f"{'hwm MiB':>7}  {'echoes':>6}  {'max ms':>6}")
        for r in self.results:
            close = f"{r.close_time * 1000:.1f}" if r.close_time is not None else "-"
            print(f"{r.name:<18}  {r.status:<7}  {close:>8}  {mib(r.baseline):>8}  {mib(r.peak):>8}  "
                  f"{mib(r.hwm):>7}  {r.echoes:>6}  {r.max_latency * 1000:>6.1f}")
        print("time: to the close (slowloris: the last drop; never-reads: the reset, from the first byte sent; "
              "max-connections: to the 503; 10k-connections: to open them all)")
        print("base/peak: the server's VmRSS before the attack and at its peak during it; hwm: its VmHWM; "
              "echoes / max ms: the well-behaved client's")
        failed = [r for r in self.results if r.status == "fail"]
        passed = len(self.results) - len(failed)
        if failed:
            print("\nfailed:")
            for r in failed:
                print(f"  {r.name}: {r.detail.splitlines()[0]}")
        print()
        print(f"{passed} passed, {len(failed)} failed", flush=True)
        return not failed and passed > 0


# ---- the attacks ------------------------------------------------------------------


def slowloris(ctx, attackers=50, open_timeout=2.0, byte_period=0.5):
    """Handshakes sent a byte every 0.5 s: each connection is dropped at the
    open timeout, not before."""
    request = upgrade_request(ctx.port)
    socks, started, closed_at, got = [], {}, {}, {}
    sel = selectors.DefaultSelector()
    try:
        for _ in range(attackers):
            sock = socket.create_connection((HOST, ctx.port), timeout=ctx.d.left("connecting"))
            sock.setblocking(False)
            started[sock] = time.monotonic()
            got[sock] = b""
            socks.append(sock)
            sel.register(sock, selectors.EVENT_READ)
        sent = 0
        next_byte = time.monotonic()
        while len(closed_at) < len(socks):
            now = time.monotonic()
            if now >= next_byte:
                for sock in socks:
                    if sock in closed_at:
                        continue
                    try:
                        sock.send(request[sent:sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        closed_at[sock] = time.monotonic()
                        sel.unregister(sock)
                sent += 1
                check(sent < len(request), "the whole request went out: the attack never ran long enough")
                next_byte += byte_period
            wait = min(max(0.0, next_byte - time.monotonic()), ctx.d.left("waiting for the open timeout"))
            for key, _ in sel.select(wait):
                sock = key.fileobj
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    got[sock] += chunk
                    continue
                closed_at[sock] = time.monotonic()
                sel.unregister(sock)
        times = [closed_at[s] - started[s] for s in socks]
        ctx.close_time = max(times)
        answered = [g for g in got.values() if g]
        ctx.note(f"{attackers} slow handshakes, {sent} bytes each, closed after {min(times):.3f}-{max(times):.3f} s"
                 f" (open timeout {open_timeout:.1f} s)" + (f"; the server sent {describe(answered[0])}" if answered
                                                              else "; nothing sent back"))
        check(min(times) >= open_timeout - 0.02, f"a slow handshake was dropped after {min(times):.3f} s, "
              f"before the {open_timeout:.1f} s open timeout")
        bound = open_timeout + 0.5 * ctx.scale
        check(max(times) <= bound, f"a slow handshake was dropped only after {max(times):.3f} s (bound {bound:.2f} s)")
    finally:
        sel.close()
        for sock in socks:
            hard_close(sock)


def huge_frame_length(ctx):
    """A binary frame header declaring 2^62 bytes: close 1009 at once; the
    server allocates nothing for it."""
    ctx.rss_bound = 4 * MIB
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng)
    try:
        t = time.monotonic()
        peer.send_raw(build_frame(OP_BINARY, b"", mask_key=b"\x11\x22\x33\x44", length=1 << 62) + b"\xaa" * 16)
        f = peer.recv_frame("waiting for close 1009")
        ctx.close_time = time.monotonic() - t
        check(f.opcode == OP_CLOSE and f.close_code() == 1009, f"expected close 1009, got {f}")
        peer.expect_eof("after close 1009")
        bound = 0.25 * ctx.scale
        check(ctx.close_time <= bound, f"close 1009 came after {ctx.close_time * 1000:.1f} ms (bound {bound:.2f} s)")
    finally:
        peer.close()


def deflate_bomb(ctx, inflated=64 * MIB):
    """~64 KiB of deflate data inflating to 64 MiB of zeros, against
    --max-size 1048576: close 1009 while inflating, memory bounded."""
    ctx.rss_bound = 16 * MIB
    peer, fields = open_ws(ctx.port, ctx.d, ctx.rng, extensions="permessage-deflate")
    try:
        names = [name for name, _ in parse_extensions(fields.get("sec-websocket-extensions", []))]
        check(names == ["permessage-deflate"], f"permessage-deflate not agreed: {names}")
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(MIB)
        data = b"".join(compressor.compress(zeros) for _ in range(inflated // MIB))
        data += compressor.flush(zlib.Z_SYNC_FLUSH)
        if data.endswith(DEFLATE_TAIL):
            data = data[:-4]
        t = time.monotonic()
        peer.send_frame(OP_BINARY, data, rsv=RSV1)
        f = peer.recv_frame("waiting for close 1009")
        ctx.close_time = time.monotonic() - t
        check(f.opcode == OP_CLOSE and f.close_code() == 1009, f"expected close 1009, got {f}")
        peer.expect_eof("after close 1009")
        ctx.note(f"{len(data)} compressed bytes -> {inflated // MIB} MiB of zeros, ratio {inflated // len(data)}:1")
        bound = 0.5 * ctx.scale
        check(ctx.close_time <= bound, f"close 1009 came after {ctx.close_time * 1000:.1f} ms (bound {bound:.2f} s)")
    finally:
        peer.close()


def ping_flood(ctx, count=200000, flood_seconds=2.0):
    """Pings with 125-byte payloads as fast as the server takes them, from a
    client that reads nothing (its receive buffer is 64 KiB) until the flood
    is over: the server coalesces the pongs it owes while its send queue is
    full, so far fewer pongs come back - in order, the last one carrying the
    last ping's payload."""
    ctx.rss_bound = 16 * MIB
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng, rcvbuf=64 * KIB)
    sock = peer.sock
    try:
        # Payload: an 8-digit ping number and 117 filler bytes. With the key
        # fixed, the masked filler (it starts 4-aligned) is the same in every
        # frame; only the number is masked per ping.
        key = b"\x5a\xa5\x3c\xc3"
        filler = mask_bytes(b"p" * 117, key)
        key8 = int.from_bytes(key * 2, "big")
        head = bytes([0x80 | OP_PING, 0x80 | 125]) + key
        frame_size = len(head) + 125
        blob = b"".join(head + (int.from_bytes(b"%08d" % i, "big") ^ key8).to_bytes(8, "big") + filler
                        for i in range(count))
        view = memoryview(blob)
        sock.setblocking(False)
        sent = 0
        start = time.monotonic()
        stop_at = start + flood_seconds
        while sent < len(blob) and time.monotonic() < stop_at:
            try:
                sent += sock.send(view[sent:sent + 256 * KIB])
            except BlockingIOError:
                select.select([], [sock], [], 0.005)
            ctx.d.left("while flooding")
        flood_time = time.monotonic() - start
        # Finish the ping cut in half, if any: it is the last one.
        target = -(-sent // frame_size) * frame_size
        pings = target // frame_size
        last = b"%08d" % (pings - 1) + b"p" * 117
        buffer = bytearray()
        pongs, last_number, last_seen = 0, -1, None
        quiet = 0.3 * ctx.scale  # after the last ping's pong: nothing more may come
        patience = 1.0 * ctx.scale  # with no pong for the last ping yet
        heard = time.monotonic()
        policy = None  # a close frame instead: the server's policy for floods
        while policy is None:
            wait = min(ctx.d.left(f"reading pongs ({pongs} so far)"), 0.05)
            readable, writable, _ = select.select([sock], [sock] if sent < target else [], [], wait)
            if writable:
                sent += sock.send(view[sent:target])
            if readable:
                chunk = sock.recv(1 << 20)
                check(chunk, f"the server closed TCP after {pongs} pongs")
                heard = time.monotonic()
                buffer += chunk
                for fin, rsv, opcode, payload in parse_server_frames(buffer):
                    if opcode == OP_CLOSE and policy is None:
                        policy = close_code_of(payload)
                        continue
                    check(opcode == OP_PONG and policy is None, f"unexpected frame: opcode {opcode}, "
                          f"{describe(payload)}")
                    check(len(payload) == 125 and payload[8:] == b"p" * 117, f"a pong with a payload no ping had: "
                          f"{describe(payload)}")
                    number = int(payload[:8])
                    check(number > last_number, f"pong for ping #{number} after the one for #{last_number}")
                    last_number = number
                    pongs += 1
                    last_seen = payload
                continue
            silent = time.monotonic() - heard
            if last_seen == last and not buffer and silent >= quiet:
                break
            if last_seen != last and sent == target and silent >= patience:
                break
        ctx.note(f"{pings} pings in {flood_time:.2f} s ({pings / max(flood_time, 1e-9):.0f}/s) -> {pongs} pongs"
                 f" ({100.0 * pongs / pings:.1f}%), the last for ping #{last_number}")
        if policy is not None:
            ctx.note(f"then the server closed with {policy}")
            peer.buffer = buffer
            peer.sock.setblocking(True)
            peer.expect_eof(f"after close {policy}")
            return
        if last_seen != last:
            # Does one more frame from us bring the pong out? Then it was
            # owed all along, waiting for the server to read again.
            sock.setblocking(True)
            peer.buffer = buffer
            peer.deadline = Deadline(1.0 * ctx.scale, 1.0 * ctx.scale)
            peer.send_frame(OP_TEXT, b"one more message")
            after = []
            try:
                while True:
                    f = peer.recv_frame("after one more message")
                    after.append(f"pong for #{int(f.payload[:8])}" if f.opcode == OP_PONG and len(f.payload) == 125
                                 else repr(f))
                    if f.opcode != OP_PONG:
                        break
            except CaseFailed as e:
                after.append(str(e))
            raise CaseFailed(f"no pong for the last ping (#{pings - 1}) within {patience:.1f} s: {pongs} pongs, "
                             f"the last for #{last_number}; once the client sent one more message the server "
                             f"sent: {', '.join(after)}")
        check(pongs * 2 <= pings, f"{pongs} pongs for {pings} pings: the pongs were not coalesced")
    finally:
        peer.close()


def fragment_flood(ctx, max_fragments=1000):
    """--max-fragments 1000: 1000 frames echoed, 1001 frames 1009, and a
    flood of 1-byte continuation frames 1009."""
    key = b"\x01\x02\x03\x04"

    def fragments(n, fin_last):
        first = build_frame(OP_TEXT, b"a", fin=False, mask_key=key)
        middle = build_frame(OP_CONT, b"a", fin=False, mask_key=key)
        final = build_frame(OP_CONT, b"a", fin=fin_last, mask_key=key)
        return first + middle * (n - 2) + final

    # At the limit: echoed whole.
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng)
    try:
        peer.send_raw(fragments(max_fragments, True))
        f = peer.recv_frame(f"waiting for the echo of a {max_fragments}-frame message")
        check(f.opcode == OP_TEXT and f.fin and f.payload == b"a" * max_fragments,
              f"a {max_fragments}-frame message came back as {f}")
    finally:
        polite_close(peer, 1.0 * ctx.scale)
    # One over: 1009.
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng)
    try:
        peer.send_raw(fragments(max_fragments + 1, True))
        f = peer.recv_frame(f"waiting for close 1009 after {max_fragments + 1} frames")
        check(f.opcode == OP_CLOSE and f.close_code() == 1009, f"{max_fragments + 1} frames: expected close 1009, got {f}")
        peer.expect_eof("after close 1009")
    finally:
        peer.close()
    # The flood: 1-byte frames as fast as they go, never a final one.
    ctx.rss_bound = 8 * MIB
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng)
    sock = peer.sock
    try:
        blob = fragments(200000, False)
        view = memoryview(blob)
        sock.setblocking(False)
        sent, buffer, code = 0, bytearray(), None
        sending = True
        t = time.monotonic()
        while code is None:
            left = ctx.d.left("waiting for close 1009 during the fragment flood")
            sending = sending and sent < len(blob)
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], min(left, 0.1))
            if writable:
                try:
                    sent += sock.send(view[sent:sent + 64 * KIB])
                except (BrokenPipeError, ConnectionResetError):
                    sending = False  # the server hung up: its close frame is still to read
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                buffer += chunk
                for fin, rsv, opcode, payload in parse_server_frames(buffer):
                    check(opcode == OP_CLOSE, f"a frame other than close: opcode {opcode}")
                    code = close_code_of(payload)
                    ctx.close_time = time.monotonic() - t
                check(chunk or code is not None, "the server closed TCP without a close frame")
        check(code == 1009, f"the fragment flood got close {code}, expected 1009")
        frames = sent // 7
        ctx.note(f"{max_fragments} frames echoed, {max_fragments + 1} -> 1009; flood: 1009 after "
                 f"{ctx.close_time * 1000:.1f} ms, {frames} frames sent by then")
        bound = 0.5 * ctx.scale
        check(ctx.close_time <= bound, f"close 1009 came after {ctx.close_time * 1000:.1f} ms (bound {bound:.2f} s)")
    finally:
        hard_close(sock)


def never_reads(ctx, interval=0.5, timeout=0.5, close_timeout=0.5):
    """64 KiB messages sent without pause by a client that never reads: the
    echoes fill the server's send queue, it stops reading (our sends stall),
    its memory stays bounded, and its unanswered keepalive ping ends the TCP
    connection."""
    ctx.rss_bound = 32 * MIB
    peer, _ = open_ws(ctx.port, ctx.d, ctx.rng, rcvbuf=64 * KIB)
    sock = peer.sock
    local = "%s:%d" % sock.getsockname()[:2]
    try:
        message = build_frame(OP_BINARY, bytes(range(256)) * 256, mask_key=b"\x10\x20\x30\x40")
        view = memoryview(message)
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock, select.POLLOUT | select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        at, total, messages = 0, 0, 0
        start = time.monotonic()
        last_accepted = start
        how = None
        budget = interval + timeout + close_timeout + 1.5 * ctx.scale
        while how is None:
            now = time.monotonic()
            if now - last_accepted > budget:
                break
            ctx.d.left("while the peer that never reads was sending")
            events = poller.poll(10)
            if any(ev & (select.POLLERR | select.POLLHUP | select.POLLRDHUP) for _, ev in events):
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                how = f"reset ({os.strerror(error)})" if error else "closed (FIN)"
                break
            try:
                n = sock.send(view[at:])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError) as e:
                how = f"send failed: {type(e).__name__}"
                break
            if n > 0:
                last_accepted = time.monotonic()
                total += n
                at += n
                if at == len(message):
                    at = 0
                    messages += 1
        closed_at = time.monotonic()
        stall = closed_at - last_accepted
        ctx.close_time = closed_at - start
        # The server logs the connection's end once its coroutine is over.
        until = time.monotonic() + 0.5 * ctx.scale
        while True:
            logged = [line for line in ctx.server_log_lines() if line.startswith(local + " ")]
            if any(" close " in line for line in logged) or time.monotonic() >= until:
                break
            time.sleep(0.01)
        observed = (f"sent {total / MIB:.1f} MiB ({messages} whole messages) in {last_accepted - start:.2f} s, then "
                    f"sends stalled; {'TCP ' + how if how else 'TCP still open'} {stall:.3f} s after the stall, "
                    f"{closed_at - start:.3f} s after the start; server log: "
                    f"{' | '.join(x[len(local) + 1:] for x in logged) or 'nothing'}")
        ctx.note(observed)
        check(how is not None, f"the server never closed the connection: {observed}")
        check(stall >= 0.3, f"the sends never stalled for long (server still reading?): {observed}")
        bound = interval + timeout + close_timeout + 0.5 * ctx.scale
        check(stall <= bound, f"closed {stall:.3f} s after the sends stalled (bound {bound:.2f} s)")
    finally:
        hard_close(sock)


class Opening:
    """One connection of many in its handshake."""
    __slots__ = ("sock", "state", "buffer", "index")


def open_many(ctx, count, batch=200):
    """Opens `count` WebSockets (at most `batch` handshakes at a time, the
    listen backlog being finite); each sends one small text message and gets
    its echo. Returns the open sockets."""
    request = upgrade_request(ctx.port)
    key = b"\x0a\x0b\x0c\x0d"
    sel = selectors.DefaultSelector()
    done, started, in_flight = [], 0, 0
    try:
        while len(done) < count:
            while in_flight < batch and started < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                err = sock.connect_ex((HOST, ctx.port))
                check(err in (0, 115), f"connection {started}: connect failed: {os.strerror(err)}")
                o = Opening()
                o.sock, o.state, o.buffer, o.index = sock, "connect", bytearray(), started
                sel.register(sock, selectors.EVENT_WRITE, o)
                started += 1
                in_flight += 1
            events = sel.select(min(ctx.d.left(f"opening connections ({len(done)} open)"), 0.5))
            for k, _ in events:
                o = k.data
                if o.state == "connect":
                    err = o.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    check(err == 0, f"connection {o.index}: connect failed: {os.strerror(err)}")
                    o.sock.send(request)
                    o.state = "response"
                    sel.modify(o.sock, selectors.EVENT_READ, o)
                    continue
                try:
                    chunk = o.sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                check(chunk, f"connection {o.index} closed by the server during its {o.state} "
                      f"({len(done)} open)")
                o.buffer += chunk
                if o.state == "response":
                    if b"\r\n\r\n" not in o.buffer:
                        continue
                    end = o.buffer.index(b"\r\n\r\n") + 4
                    status, _ = parse_head(bytes(o.buffer[:end]))
                    check(status.startswith("HTTP/1.1 101"), f"connection {o.index}: handshake answered "
                          f"{status!r} ({len(done)} open)")
                    del o.buffer[:end]
                    o.sock.send(build_frame(OP_TEXT, b"hello %d" % o.index, mask_key=key))
                    o.state = "echo"
                frames = parse_server_frames(o.buffer)
                if frames:
                    check(frames[0][2] == OP_TEXT and frames[0][3] == b"hello %d" % o.index,
                          f"connection {o.index}: echo was opcode {frames[0][2]} {describe(frames[0][3])}")
                    sel.unregister(o.sock)
                    done.append(o.sock)
                    in_flight -= 1
    except BaseException:
        for k in list(sel.get_map().values()):
            hard_close(k.fileobj)
        for sock in done:
            hard_close(sock)
        raise
    finally:
        sel.close()
    return done


def many_connections(ctx, count):
    """`count` WebSockets open at once, each echoing a message; the server's
    RSS per connection."""
    with open(f"/proc/{ctx.pid}/limits") as f:
        line = next((x for x in f if x.startswith("Max open files")), "")
    fields = line.split()
    server_limit = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else None
    check(server_limit is None or server_limit >= count + 50,
          f"the server may open {server_limit} files, too few for {count} connections")
    t = time.monotonic()
    socks = open_many(ctx, count)
    try:
        opened = time.monotonic() - t
        ctx.close_time = opened
        # All still open: nothing (no close, no EOF) is waiting on any of them.
        with selectors.DefaultSelector() as sel:
            for sock in socks:
                sel.register(sock, selectors.EVENT_READ)
            ready = sel.select(0.2 * ctx.scale)
        check(not ready, f"{len(ready)} of the {count} connections have something to read (closed?)")
        rss = ctx.sampler.now()
        per = (rss - ctx.baseline) / count
        ctx.note(f"{count} connections opened and echoed in {opened:.2f} s ({count / opened:.0f}/s), all open at "
                 f"once; server RSS {mib(ctx.baseline)} -> {mib(rss)} MiB, {per / KIB:.1f} KiB per connection")
    finally:
        for sock in socks:
            hard_close(sock)


def max_connections(ctx, limit=100):
    """--max-connections 100: the well-behaved client and 99 more open, the
    next gets 503 with Retry-After (and is closed); after one closes, a new
    one is accepted."""
    peers = []
    try:
        for _ in range(limit - 1):  # the well-behaved client is the 100th
            peers.append(open_ws(ctx.port, ctx.d, ctx.rng)[0])
        t = time.monotonic()
        sock = socket.create_connection((HOST, ctx.port), timeout=ctx.d.left("connecting"))
        extra = Peer(sock, ctx.d, ctx.rng, masking=True)
        extra.send_raw(upgrade_request(ctx.port))
        status, fields = parse_head(extra.read_until(b"\r\n\r\n", "waiting for the 503"))
        ctx.close_time = time.monotonic() - t
        check(status.startswith("HTTP/1.1 503"), f"connection {limit + 1} answered {status!r}, expected 503")
        retry = fields.get("retry-after", [])
        check(len(retry) == 1 and retry[0].isdigit(), f"503 without a Retry-After in seconds: {retry}")
        length = int(fields.get("content-length", ["0"])[0])
        extra.read_exact(length, "reading the 503's body")
        extra.expect_eof("after the 503")
        extra.close()
        # One of the 100 closes; then a new one gets in. The server counts
        # the connection out once its closing handshake is over, a moment
        # after our EOF: a 503 meanwhile is retried (bounded, and counted).
        polite_close(peers.pop(), 1.0 * ctx.scale)
        attempts = 0
        until = time.monotonic() + 1.0 * ctx.scale
        while True:
            attempts += 1
            try:
                peers.append(open_ws(ctx.port, ctx.d, ctx.rng)[0])
                break
            except CaseFailed as e:
                check("503" in str(e) and time.monotonic() < until, f"after one closed: {e}")
                time.sleep(0.01)
        peer = peers[-1]
        peer.send_frame(OP_TEXT, b"let in")
        f = peer.recv_frame("waiting for the new connection's echo")
        check(f.opcode == OP_TEXT and f.payload == b"let in", f"the new connection echoed {f}")
        ctx.note(f"{limit} open (the well-behaved client and {limit - 1}); #{limit + 1} got 503 with "
                 f"Retry-After: {retry[0]} in {ctx.close_time * 1000:.1f} ms and was closed; after one closed, "
                 f"a new one was accepted (attempt {attempts})")
    finally:
        for peer in peers:
            hard_close(peer.sock)


# ---- main ----------------------------------------------------------------------------


def is_sanitized(path):
    """Whether an executable was built with AddressSanitizer."""
    try:
        with open(path, "rb") as f:
            tail = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return False
                if b"__asan_init" in tail + chunk:
                    return True
                tail = chunk[-16:]
    except OSError:
        return False


def raise_fd_limit(wanted):
    """Soft RLIMIT_NOFILE up to the hard limit (the server inherits it).
    Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        new = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return soft


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-cmd", required=True,
                        help="the echo server, with --port 0 (it prints 'listening on HOST:PORT'); "
                             "each case adds its flags")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every time bound (slow servers)")
    parser.add_argument("--connections", type=int, default=10000, help="for 10k-connections (default 10000)")
    parser.add_argument("--sanitized", choices=("auto", "yes", "no"), default="auto",
                        help="a sanitizer build: memory bounds reported, not checked (auto: look in the binary)")
    parser.add_argument("--only", action="append", help="run only cases whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print each case's notes")
    args = parser.parse_args()
    sys.setswitchinterval(0.001)  # the well-behaved client's thread gets its turn promptly

    command = shlex.split(args.server_cmd)
    sanitized = args.sanitized == "yes" or (args.sanitized == "auto" and is_sanitized(command[0]))
    # 10k sockets here and 10k in the server, plus a margin for each.
    limit = raise_fd_limit(args.connections + 200)
    count = args.connections
    print(f"server: {args.server_cmd}; time scale {args.time_scale:g}; RLIMIT_NOFILE {limit}"
          + ("; sanitizer build: RSS bounds reported, not checked" if sanitized else ""), flush=True)
    if limit < count + 200:
        count = max(100, limit - 200)
        print(f"note: RLIMIT_NOFILE is {limit}: 10k-connections opens {count} connections, not "
              f"{args.connections}", flush=True)

    runner = AttackRunner(args, command, sanitized)
    runner.run("slowloris", ["--open-timeout", "2000"], slowloris, 8.0)
    runner.run("huge-frame-length", [], huge_frame_length, 3.0)
    runner.run("deflate-bomb", ["--max-size", "1048576"], deflate_bomb, 5.0)
    runner.run("ping-flood", [], ping_flood, 10.0)
    runner.run("fragment-flood", ["--max-fragments", "1000"], fragment_flood, 5.0)
    runner.run("never-reads", ["--ping-interval", "500", "--ping-timeout", "500", "--close-timeout", "500"],
               never_reads, 15.0)
    runner.run("10k-connections", [], lambda ctx: many_connections(ctx, count), 60.0)
    runner.run("max-connections", ["--max-connections", "100"], max_connections, 10.0)
    return 0 if runner.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
