#!/usr/bin/env python3
"""Runs examples/sync_client against python_echo_server.py and checks the echo,
without and with permessage-deflate.

usage: run_sync_client.py SYNC_CLIENT [--tls]

With --tls a CA and a server certificate for 127.0.0.1 are made with the
openssl command line tool in a temporary directory; sync_client trusts the
CA with --ca and must also refuse the server without it. Every process runs
under a timeout, so the test cannot hang.
"""

import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # common.py, whatever the working directory
from common import make_certificates  # noqa: E402

TIMEOUT = 30


def start_server(extra):
    server = subprocess.Popen([sys.executable, str(HERE / "python_echo_server.py"), "--lifetime", str(TIMEOUT), *extra],
                              stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().strip()
    if not port.isdigit():
        server.kill()
        raise SystemExit("echo server did not print its port")
    return server, int(port)


def run_client(client, *args):
    return subprocess.run([client, "--timeout", "10", *args], capture_output=True, text=True, timeout=TIMEOUT)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    client = sys.argv[1]
    tls = "--tls" in sys.argv[2:]
    messages = ["hello", "", "caf\u00e9 \u2615", "x" * 70000]

    with tempfile.TemporaryDirectory() as directory:
        extra = []
        if tls:
            ca, cert, key = make_certificates(directory, TIMEOUT)
            extra = ["--cert", str(cert), "--key", str(key)]
        server, port = start_server(extra)
        try:
            scheme = "wss" if tls else "ws"
            uri = f"{scheme}://127.0.0.1:{port}/echo"
            for compression in ([], ["--deflate"]):
                client_args = (["--ca", str(ca)] if tls else []) + compression + [uri, *messages]
                result = run_client(client, *client_args)
                if result.returncode != 0:
                    raise SystemExit(f"sync_client {' '.join(compression)} failed ({result.returncode}): "
                                     f"{result.stderr}")
                expected = "".join(m + "\n" for m in messages)
                if result.stdout != expected:
                    raise SystemExit(f"unexpected output: {result.stdout[:200]!r}")
            if tls:
                # Without the CA the server must be refused, with a clear message.
                refused = run_client(client, uri, "hello")
                if refused.returncode == 0 or "TLS handshake failed" not in refused.stderr:
                    raise SystemExit(f"untrusted server was not refused: {refused.returncode} {refused.stderr}")
            # A URI that is not ws:// or wss:// is a usage error.
            bad = run_client(client, f"http://127.0.0.1:{port}/")
            if bad.returncode != 2:
                raise SystemExit(f"bad URI not refused: {bad.returncode}")
        finally:
            server.kill()
            server.wait(timeout=TIMEOUT)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
