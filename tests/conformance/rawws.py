"""Raw WebSocket frames over real TCP, and a small case runner.

Shared by run.py (the server suite) and scripted_server.py (the client
suite). Standard library only: every byte on the wire is built or checked
here by hand, so nothing between the test and the peer can hide a mistake.
"""

import base64
import hashlib
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import time
import zlib

# RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
OPCODE_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

# RFC 7692 §7.2.1: the tail a sync flush leaves, removed by the sender.
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class CaseFailed(Exception):
    """A check of a case did not hold."""


class CaseTimeout(CaseFailed):
    """A case hit its time bound: always a failure, never a pass."""


def check(condition, message):
    if not condition:
        raise CaseFailed(message)


def describe(data, limit=24):
    """A short printable form of bytes for failure messages."""
    data = bytes(data)
    head = data[:limit].hex(" ")
    return f"{len(data)} bytes [{head}{' ...' if len(data) > limit else ''}]"


def mask_bytes(data, key):
    """XORs data with the 4-byte key (RFC 6455 §5.3), fast for large data."""
    n = len(data)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(n, "little")


def encode_length(n, encoding=None):
    """The 7-bit length field and extension bytes. `encoding` forces 7, 16 or
    64 bits (to build non-minimal lengths); None picks the minimal one."""
    if encoding is None:
        encoding = 7 if n < 126 else 16 if n < 65536 else 64
    if encoding == 7:
        return n, b""
    if encoding == 16:
        return 126, struct.pack("!H", n)
    return 127, struct.pack("!Q", n)


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask_key=None, length=None, encoding=None):
    """One frame's bytes. mask_key=None sends it unmasked; `length` lies about
    the payload length (to send a header alone, or a wrong one)."""
    payload = bytes(payload)
    if length is None:
        length = len(payload)
    len7, extension = encode_length(length, encoding)
    first = (0x80 if fin else 0) | rsv | (opcode & 0x0F)
    second = len7 | (0x80 if mask_key is not None else 0)
    head = bytes([first, second]) + extension
    if mask_key is None:
        return head + payload
    return head + mask_key + mask_bytes(payload, mask_key)


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "key", "payload")

    def __init__(self, fin, rsv, opcode, masked, key, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.key, self.payload = masked, key, payload

    def __repr__(self):
        name = OPCODE_NAMES.get(self.opcode, f"opcode {self.opcode:#x}")
        flags = ("fin " if self.fin else "") + (f"rsv={self.rsv:#x} " if self.rsv else "")
        return f"<{name} {flags}{'masked ' if self.masked else ''}{describe(self.payload)}>"

    def close_code(self):
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]


def accept_key(key):
    """RFC 6455 §4.2.2: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def parse_head(head):
    """(first line, {lower-case name: [values]}) of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], fields


def parse_extensions(values):
    """Sec-WebSocket-Extensions values -> [(name, {param: value or None})]."""
    result = []
    for value in values:
        for item in value.split(","):
            parts = [p.strip() for p in item.split(";")]
            if not parts[0]:
                continue
            params = {}
            for p in parts[1:]:
                k, eq, v = p.partition("=")
                params[k.strip()] = v.strip().strip('"') if eq else None
            result.append((parts[0], params))
    return result


class Deadline:
    """A case's time budget: every blocking step waits at most what is left
    of it (and never more than the hard bound), and running out is a
    failure."""

    def __init__(self, seconds, hard_bound, name=""):
        self.name = name  # "group/case": seeds the case's random choices
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.seconds = seconds
        self.hard_bound = hard_bound

    def left(self, what):
        remaining = min(self.end - time.monotonic(), self.hard_bound)
        if remaining <= 0:
            raise CaseTimeout(f"time bound ({self.seconds:.1f} s) ran out {what}")
        return remaining

    def elapsed(self):
        return time.monotonic() - self.start


class Peer:
    """One TCP connection speaking raw frames. `masking`: this side masks its
    frames (a client does). Reads are buffered; every wait is bounded by the
    case's deadline."""

    def __init__(self, sock, deadline, rng, masking):
        self.sock = sock
        self.deadline = deadline
        self.rng = rng
        self.masking = masking
        self.buffer = bytearray()
        self.eof = False
        self.reset = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- writing -----------------------------------------------------------

    def new_key(self):
        return bytes(self.rng.getrandbits(8) for _ in range(4))

    def frame(self, opcode, payload=b"", fin=True, rsv=0, mask=None, **kwargs):
        if mask is None:
            mask = self.masking
        key = kwargs.pop("key", None)
        if mask and key is None:
            key = self.new_key()
        return build_frame(opcode, payload, fin, rsv, key if mask else None, **kwargs)

    def send_raw(self, data, chop=None):
        """Writes data whole (chop=None), in 1-byte writes (chop=1), or in
        writes of seeded random sizes (chop="random")."""
        data = memoryview(bytes(data))
        if chop is None:
            pieces = [data]
        elif chop == "random":
            pieces, at = [], 0
            top = 64 if len(data) <= 4096 else 256 * 1024
            while at < len(data):
                n = self.rng.randint(1, top)
                pieces.append(data[at:at + n])
                at += n
        else:
            pieces = [data[i:i + chop] for i in range(0, len(data), chop)]
        for piece in pieces:
            self.sock.settimeout(self.deadline.left("while sending"))
            try:
                self.sock.sendall(piece)
            except socket.timeout:
                raise CaseTimeout(f"time bound ({self.deadline.seconds:.1f} s) ran out while sending")
            except (BrokenPipeError, ConnectionResetError) as e:
                raise CaseFailed(f"{type(e).__name__} while sending; the peer had sent: {self.leftovers()}")

    def leftovers(self):
        """What the peer sent that was not read yet, as frames (for failure
        messages after the peer hung up on us)."""
        try:
            self.sock.setblocking(False)
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.buffer += chunk
        except OSError:
            pass
        frames, data = [], bytes(self.buffer)
        while len(data) >= 2:
            n, at = data[1] & 0x7F, 2
            if n == 126:
                n, at = struct.unpack("!H", data[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack("!Q", data[2:10])[0], 10
            at += 4 if data[1] & 0x80 else 0
            frames.append(f"{OPCODE_NAMES.get(data[0] & 0x0F, hex(data[0] & 0x0F))} "
                          f"{describe(data[at:at + n], 8)}")
            data = data[at + n:]
        return ", ".join(frames) or "nothing"

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, chop=None, **kwargs):
        self.send_raw(self.frame(opcode, payload, fin, rsv, **kwargs), chop)

    def send_close(self, code=None, reason=b"", **kwargs):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send_frame(OP_CLOSE, payload, **kwargs)

    def try_send(self, data):
        """Sends if the peer still listens; a closed peer is not an error."""
        try:
            self.send_raw(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    # ---- reading -----------------------------------------------------------

    def _fill(self, what):
        if self.eof:
            raise CaseFailed(f"the peer closed TCP {what}")
        self.sock.settimeout(self.deadline.left(what))
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise CaseTimeout(f"time bound ({self.deadline.seconds:.1f} s) ran out {what}")
        except ConnectionResetError:
            self.eof = self.reset = True
            raise CaseFailed(f"the peer reset TCP {what}")
        if not chunk:
            self.eof = True
            raise CaseFailed(f"the peer closed TCP {what}")
        self.buffer += chunk

    def read_exact(self, n, what="while reading"):
        while len(self.buffer) < n:
            self._fill(what)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_until(self, marker, what, limit=65536):
        while marker not in self.buffer:
            check(len(self.buffer) < limit, f"no {marker!r} in the first {limit} bytes")
            self._fill(what)
        at = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:at])
        del self.buffer[:at]
        return data

    def recv_frame(self, what="waiting for a frame"):
        b0, b1 = self.read_exact(2, what)
        len7 = b1 & 0x7F
        if len7 == 126:
            length = struct.unpack("!H", self.read_exact(2, what))[0]
        elif len7 == 127:
            length = struct.unpack("!Q", self.read_exact(8, what))[0]
        else:
            length = len7
        masked = bool(b1 & 0x80)
        key = self.read_exact(4, what) if masked else None
        payload = self.read_exact(length, what)
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, masked, key, payload)

    def expect_eof(self, what="after the close handshake"):
        """The peer closes TCP (a reset counts too) with nothing more sent."""
        while not self.eof:
            self.sock.settimeout(self.deadline.left(f"waiting for TCP to close {what}"))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise CaseTimeout(f"time bound ({self.deadline.seconds:.1f} s) ran out: "
                                  f"TCP still open {what}")
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if not chunk:
                self.eof = True
                break
            self.buffer += chunk
        check(not self.buffer, f"bytes after the close frame: {describe(self.buffer)}")


class Runner:
    """Runs cases, prints one line each, a table by group, and the closing
    `N passed, N failed` line."""

    def __init__(self, time_scale=1.0, hard_bound=5.0, only=None, verbose=False):
        self.time_scale = time_scale
        self.hard_bound = hard_bound
        self.only = only
        self.verbose = verbose
        self.results = []  # (group, name, status, seconds, detail)

    def selected(self, group, name):
        return not self.only or any(p in f"{group}/{name}" for p in self.only)

    def skip(self, group, name, why):
        if not self.selected(group, name):
            return
        self.results.append((group, name, "skip", 0.0, why))
        print(f"SKIP  {group}/{name}: {why}", flush=True)

    def run(self, group, name, fn, budget=2.0):
        """fn(deadline) raises CaseFailed on a failed check; it may return a
        note to print."""
        if not self.selected(group, name):
            return
        seconds = budget * self.time_scale
        deadline = Deadline(seconds, max(self.hard_bound * self.time_scale, 0.1), f"{group}/{name}")
        status, detail = "pass", ""
        try:
            note = fn(deadline)
            if note:
                detail = str(note)
            if deadline.elapsed() > seconds:
                status, detail = "fail", f"took {deadline.elapsed():.2f} s, over its {seconds:.1f} s bound"
        except CaseFailed as e:
            status, detail = "fail", str(e)
        except (OSError, ValueError, struct.error, zlib.error) as e:
            status, detail = "fail", f"{type(e).__name__}: {e}"
        took = deadline.elapsed()
        self.results.append((group, name, status, took, detail))
        line = f"{status.upper():4}  {group}/{name}  {took:.3f}s"
        if detail and (status != "pass" or self.verbose):
            line += f"  {detail}"
        print(line, flush=True)

    __call__ = run

    def summary(self):
        groups = []
        for group, *_ in self.results:
            if group not in groups:
                groups.append(group)
        width = max([len(g) for g in groups] + [5])
        print()
        print(f"{'group':<{width}}  passed  failed  skipped")
        totals = [0, 0, 0]
        for g in groups:
            counts = [sum(1 for r in self.results if r[0] == g and r[2] == s) for s in ("pass", "fail", "skip")]
            totals = [a + b for a, b in zip(totals, counts)]
            print(f"{g:<{width}}  {counts[0]:6}  {counts[1]:6}  {counts[2]:7}")
        print(f"{'total':<{width}}  {totals[0]:6}  {totals[1]:6}  {totals[2]:7}")
        failures = [r for r in self.results if r[2] == "fail"]
        if failures:
            print("\nfailed:")
            for group, name, _, _, detail in failures:
                print(f"  {group}/{name}: {detail}")
        print()
        print(f"{totals[0]} passed, {totals[1]} failed", flush=True)
        return totals[1] == 0 and totals[0] > 0


def start_process(command, what, timeout, stderr=None):
    """Starts `command` (a list), reads its stdout until 'listening on
    HOST:PORT', and returns (process, port)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=stderr)
    end = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in line:
            left = end - time.monotonic()
            if left <= 0 or not selector.select(left):
                stop_process(process, 1.0)
                raise RuntimeError(f"{what} printed no 'listening on' line within {timeout} s")
            byte = os.read(process.stdout.fileno(), 1)
            if not byte:
                process.wait()
                raise RuntimeError(f"{what} exited ({process.returncode}) before listening")
            line += byte
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("listening on ") or ":" not in text:
        stop_process(process, 1.0)
        raise RuntimeError(f"{what} printed {text!r}, not 'listening on HOST:PORT'")
    return process, int(text.rsplit(":", 1)[1])


def stop_process(process, timeout):
    """SIGTERM by PID, then SIGKILL if it does not exit in time. Returns the
    exit status, or None when it had to be killed."""
    if process.poll() is not None:
        return process.returncode
    try:
        os.kill(process.pid, signal.SIGTERM)
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return None


def text_payload(n, seed=0):
    """Exactly n bytes of valid UTF-8 with 2-, 3- and 4-byte characters."""
    pattern = "Hello, κόσμε! € 𝄞 ö — 漢字 ".encode("utf-8")
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += pattern[: rng.randint(1, len(pattern))].decode("utf-8", "ignore").encode("utf-8")
        out += b" "
    out = out[:n]
    # Cut back to a character boundary, then pad with ASCII.
    while out and (out[-1] & 0xC0) == 0x80:
        out.pop()
    if out and out[-1] >= 0xC0:
        out.pop()
    out += b"x" * (n - len(out))
    out = bytes(out)
    out.decode("utf-8")
    return out


def binary_payload(n, seed=0):
    return random.Random(seed).randbytes(n)


def deflate_message(compressor, data):
    """RFC 7692 §7.2.1: compress, sync flush, drop the trailing 00 00 ff ff."""
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    if out.endswith(DEFLATE_TAIL):
        out = out[:-4]
    return out


def inflate_message(decompressor, data, limit=1 << 26, piece=128):
    """RFC 7692 §7.2.2: append 00 00 ff ff and inflate. The output comes in
    small pieces so that zlib keeps only its window of history: a back
    reference further than the agreed window fails ("invalid distance too
    far back") even inside one message."""
    out = bytearray()
    data = memoryview(bytes(data) + DEFLATE_TAIL)
    # Input goes in by slices: zlib copies the unconsumed tail on every call,
    # which over a whole 16 MiB message would cost quadratic time.
    for at in range(0, len(data), 4096):
        pending = data[at:at + 4096]
        while True:
            chunk = decompressor.decompress(pending, piece)
            out += chunk
            pending = decompressor.unconsumed_tail
            check(len(out) <= limit, "the inflated message exceeds the test's limit")
            if not pending and len(chunk) < piece:
                break
    return bytes(out)

