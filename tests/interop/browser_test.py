#!/usr/bin/env python3
"""A real browser against the echo server: headless Chromium, driven through
ChromeDriver's WebDriver HTTP API (Python standard library only).

    browser_test.py http://127.0.0.1:PORT/ [--screenshot FILE]
    browser_test.py --server COMMAND [ARGS...] -- [--screenshot FILE]

The first form tests a server that is already running. The second starts
COMMAND, reads the "listening on HOST:PORT" line it prints, tests it, then
stops it with SIGTERM and expects it to exit 0.

The test opens the server's own page, then, through JavaScript run in that
page, opens a WebSocket back to the server and checks that:
  - permessage-deflate was negotiated (ws.extensions);
  - a non-ASCII text message comes back as the same text;
  - a 100 KB binary message (ArrayBuffer) comes back byte for byte;
  - closing with 1000 ends with a close event of code 1000, wasClean;
  - text typed into the page's own text field and sent with Enter shows up
    twice on the page, sent and echoed (when the page has a text field).
It saves a screenshot of the page, and exits 0 on success, 1 on failure, and
77 (skipped) when chromium or chromedriver is not installed. Every wait is
bounded; ChromeDriver and Chromium are stopped by PID at the end.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium reaches out to the internet on its own.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1000,700",
]

# Runs in the page; the last argument is WebDriver's callback.
WEBSOCKET_SCRIPT = r"""
const url = arguments[0];
const done = arguments[arguments.length - 1];
const text = "h\u00e9llo \u4e16\u754c \ud83c\udf89";
const binary = new Uint8Array(100 * 1024);
for (let i = 0; i < binary.length; i++) binary[i] = (i * 31 + 7) & 0xff;
const result = { ok: false, steps: [] };
let finished = false;
const finish = (error) => {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  if (error) result.error = error;
  done(result);
};
const timer = setTimeout(() => finish("no answer within 20 s in the page"), 20000);
let ws;
try {
  ws = new WebSocket(url);
} catch (e) {
  finish("new WebSocket(" + url + ") threw: " + e);
  return;
}
ws.binaryType = "arraybuffer";
let stage = "text";
ws.onopen = () => {
  result.steps.push("open");
  result.extensions = ws.extensions;
  result.text_bytes = new TextEncoder().encode(text).length;
  ws.send(text);
};
ws.onmessage = (event) => {
  if (stage === "text") {
    if (typeof event.data !== "string") return finish("the text message came back as binary");
    if (event.data !== text) return finish("the text echo differs: " + JSON.stringify(event.data));
    result.steps.push("text echo");
    stage = "binary";
    ws.send(binary.buffer);
  } else if (stage === "binary") {
    if (!(event.data instanceof ArrayBuffer)) return finish("the binary message came back as text");
    const echoed = new Uint8Array(event.data);
    if (echoed.length !== binary.length)
      return finish("the binary echo has " + echoed.length + " bytes, not " + binary.length);
    for (let i = 0; i < binary.length; i++)
      if (echoed[i] !== binary[i]) return finish("the binary echo differs at byte " + i);
    result.steps.push("binary echo");
    stage = "closing";
    ws.close(1000, "done");
  } else {
    finish("a message arrived after the echoes: " + String(event.data).slice(0, 80));
  }
};
ws.onerror = () => result.steps.push("error event");
ws.onclose = (event) => {
  result.steps.push("close");
  result.close_code = event.code;
  result.close_reason = event.reason;
  result.was_clean = event.wasClean;
  result.ok = stage === "closing";
  finish(result.ok ? null : "the connection closed during the " + stage + " stage");
};
"""


class TestFailure(Exception):
    pass


class Deadline(Exception):
    pass


# Requests go straight to 127.0.0.1, never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WebDriver:
    def __init__(self, port, timeout):
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout
        self.session = None

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with OPENER.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read().decode())
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read().decode()).get("value", {})
                message = f"{detail.get('error')}: {detail.get('message', '')}".strip()
            except ValueError:
                message = str(e)
            raise TestFailure(f"WebDriver {method} {path}: HTTP {e.code}: {message[:2000]}") from None
        except (urllib.error.URLError, OSError) as e:
            raise TestFailure(f"WebDriver {method} {path}: {e}") from None
        return answer.get("value")

    def session_call(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)


# WebDriver names element references by this key (W3C WebDriver §12).
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
# Typed into the page as a person would; ChromeDriver types only characters
# of the Basic Multilingual Plane, so no emoji here.
TYPED_TEXT = "h\u00e9llo \u4e16\u754c, typed"


def use_page_form(driver):
    """Types into the page's own text field and presses Enter, as a person
    would, and waits for the text to show twice (sent, then echoed). Returns
    a problem, or None; a page without a text field is left alone."""
    try:
        found = driver.session_call("POST", "/element", {
            "using": "css selector",
            "value": "input:not([type=hidden]):not([type=submit]):not([type=button]):not([type=checkbox])"})
    except TestFailure as e:
        if "no such element" in str(e):
            print("browser_test: the page has no text field; typing skipped")
            return None
        raise
    element = found[ELEMENT_KEY]
    driver.session_call("POST", f"/element/{element}/value", {"text": TYPED_TEXT + "\ue007"})  # Enter
    count_script = "return document.body.innerText.split(arguments[0]).length - 1;"
    end = time.monotonic() + 10
    shown = 0
    while time.monotonic() < end:
        shown = driver.session_call("POST", "/execute/sync", {"script": count_script, "args": [TYPED_TEXT]})
        if shown >= 2:
            print(f"browser_test: typed {TYPED_TEXT!r} into the page; it shows sent and echoed")
            return None
        time.sleep(0.1)
    return f"text typed into the page showed {shown} time(s) within 10 s, not twice (sent and echoed)"


def find_program(names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def descendants(pid):
    """PIDs of every process below pid (from /proc), deepest last."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def stop_process(process, name, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"browser_test: {name} (pid {process.pid}) ignored SIGTERM; killing it", file=sys.stderr)
            process.kill()
            process.wait(grace)
    return process.returncode


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_line(path, prefix, process, name, timeout):
    """Waits for a line starting with prefix in the file the process writes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        if process.poll() is not None:
            with open(path, errors="replace") as f:
                raise TestFailure(f"{name} exited with status {process.returncode}:\n{f.read()[-2000:]}")
        time.sleep(0.05)
    raise TestFailure(f"{name} printed no '{prefix}' line within {timeout:.0f} s")


def start_server(command, workdir):
    log = os.path.join(workdir, "server.log")
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        address = wait_for_line(log, "listening on ", process, "the server", 20)
    except TestFailure:
        stop_process(process, "the server")
        raise
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        stop_process(process, "the server")
        raise TestFailure(f"the server printed an address without a port: {address!r}")
    return process, f"http://{host}:{port}/"


def run_browser(url, screenshot, chromium, chromedriver, workdir, timeout):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TestFailure(f"not an http:// URL: {url}")
    ws_url = urllib.parse.urlunsplit(("ws" if parsed.scheme == "http" else "wss", parsed.netloc,
                                      parsed.path or "/", parsed.query, ""))

    driver_log = os.path.join(workdir, "chromedriver.log")
    with open(driver_log, "wb") as out:
        driver_process = subprocess.Popen([chromedriver, "--port=0"], stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
    browser_pids = []
    driver = None
    try:
        started = wait_for_line(driver_log, "ChromeDriver was started successfully on port ", driver_process,
                                "chromedriver", 20)
        driver = WebDriver(int(started.rstrip(".")), timeout)

        profile = os.path.join(workdir, "profile")
        os.mkdir(profile)
        capabilities = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium,
                                           "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]},
                    "timeouts": {"script": 30000, "pageLoad": 30000, "implicit": 0},
                }
            }
        }
        created = driver.call("POST", "/session", capabilities)
        driver.session = created["sessionId"]
        browser_pids = descendants(driver_process.pid)
        version = created.get("capabilities", {}).get("browserVersion", "?")
        print(f"browser_test: Chromium {version}, WebDriver session {driver.session}")

        driver.session_call("POST", "/url", {"url": url})
        title = driver.session_call("GET", "/title")
        print(f"browser_test: opened {url} (title {title!r})")

        result = driver.session_call("POST", "/execute/async", {"script": WEBSOCKET_SCRIPT, "args": [ws_url]})
        print(f"browser_test: {ws_url}: {json.dumps(result, ensure_ascii=False)}")

        page_problem = use_page_form(driver)

        png = base64.b64decode(driver.session_call("GET", "/screenshot"))
        with open(screenshot, "wb") as f:
            f.write(png)
        print(f"browser_test: screenshot ({len(png)} bytes) in {screenshot}")

        problems = []
        if not isinstance(result, dict):
            raise TestFailure(f"the page script returned {result!r}")
        if result.get("error"):
            problems.append(result["error"])
        if "permessage-deflate" not in (result.get("extensions") or ""):
            problems.append(f"permessage-deflate was not negotiated (extensions {result.get('extensions')!r})")
        if result.get("close_code") != 1000:
            problems.append(f"close code {result.get('close_code')}, not 1000")
        if result.get("was_clean") is not True:
            problems.append("the close was not clean (wasClean false)")
        if page_problem:
            problems.append(page_problem)
        if problems:
            raise TestFailure("; ".join(problems))
    finally:
        if driver is not None and driver.session is not None:
            try:
                driver.timeout = 10
                driver.session_call("DELETE", "")
            except TestFailure as e:
                print(f"browser_test: closing the session: {e}", file=sys.stderr)
        browser_pids = sorted(set(browser_pids + descendants(driver_process.pid)))
        stop_process(driver_process, "chromedriver")
        kill_pids(browser_pids)  # whatever Chromium left behind


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the echo server's page, http://127.0.0.1:PORT/")
    parser.add_argument("--server", nargs=argparse.REMAINDER,
                        help="start this server command (ends at '--') and test it")
    parser.add_argument("--screenshot", default="browser_test.png", help="where to save the PNG")
    parser.add_argument("--timeout", type=float, default=120.0, help="overall limit in seconds")
    parser.add_argument("--chromium", help="the browser (default: chromium on the PATH)")
    parser.add_argument("--chromedriver", help="its driver (default: chromedriver on the PATH)")
    argv = sys.argv[1:]
    server_command = None
    if "--server" in argv:
        # Everything after --server up to "--" is the server's command line.
        at = argv.index("--server")
        rest = argv[at + 1:]
        end = rest.index("--") if "--" in rest else len(rest)
        server_command = rest[:end]
        argv = argv[:at] + rest[end + 1:]
    args = parser.parse_args(argv)
    if bool(server_command) == bool(args.url):
        parser.error("give either a URL or --server COMMAND ... --")

    chromium = args.chromium or find_program(["chromium", "chromium-browser", "google-chrome"])
    chromedriver = args.chromedriver or find_program(["chromedriver"])
    if not chromium or not chromedriver:
        print("browser_test: SKIPPED: chromium and chromedriver are needed "
              "(Debian: apt-get install chromium chromium-driver)")
        return SKIP

    def on_alarm(signum, frame):
        raise Deadline()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout))
    server = None
    status = 1
    try:
        with tempfile.TemporaryDirectory(prefix="wsx-browser-") as workdir:
            try:
                url = args.url
                if server_command:
                    server, url = start_server(server_command, workdir)
                run_browser(url, args.screenshot, chromium, chromedriver, workdir, min(60.0, args.timeout))
                if server is not None:
                    code = stop_process(server, "the server")
                    server = None
                    if code != 0:
                        raise TestFailure(f"the server exited with status {code} after SIGTERM, not 0")
                print("browser_test: PASSED")
                status = 0
            except TestFailure as e:
                print(f"browser_test: FAILED: {e}", file=sys.stderr)
            except Deadline:
                print(f"browser_test: FAILED: not done within {args.timeout:.0f} s", file=sys.stderr)
            finally:
                signal.alarm(0)
                if server is not None:
                    stop_process(server, "the server")
                    log = os.path.join(workdir, "server.log")
                    if status != 0 and os.path.exists(log):
                        with open(log, errors="replace") as f:
                            sys.stderr.write("server output:\n" + f.read()[-2000:])
    finally:
        signal.alarm(0)
    return status


if __name__ == "__main__":
    sys.exit(main())
