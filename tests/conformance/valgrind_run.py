#!/usr/bin/env python3
"""The conformance suite against a server running under valgrind.

    valgrind_run.py --server build/examples/echo_server [--time-scale 20]

Starts the server under `valgrind --leak-check=full
--errors-for-leak-kinds=definite,indirect --error-exitcode=99` (with the
reduced size set: --max-size 1 MiB, so the 16 MiB cases are skipped), runs
run.py against it, which ends by stopping the server with SIGTERM and
requires it to exit 0 (valgrind's 99 on any error or definite/indirect
leak fails that case). Then every valgrind log (one per server process) must
report 0 errors and 0 bytes definitely and indirectly lost.

Use a build without sanitizers (valgrind and AddressSanitizer do not mix);
a Debug build gives readable stacks. Ends with `N passed, N failed`, where
the valgrind check of each log counts as one case.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile


def check_log(path):
    """(ok, summary lines) of one valgrind log."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    errors = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
    indirect = re.search(r"indirectly lost: ([\d,]+) bytes", text)
    freed = "All heap blocks were freed" in text
    lines = [line.split("== ", 1)[-1] for line in text.splitlines()
             if "ERROR SUMMARY" in line or "lost:" in line or "All heap blocks" in line]
    if errors is None or (not freed and (definite is None or indirect is None)):
        return False, lines + ["the log has no complete summary (did the server exit?)"]
    leaks = 0 if freed else int(definite.group(1).replace(",", "")) + int(indirect.group(1).replace(",", ""))
    return int(errors.group(1)) == 0 and leaks == 0, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="the echo_server binary")
    parser.add_argument("--valgrind", default="valgrind")
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--keep-logs", help="copy the valgrind logs into this directory")
    parser.add_argument("suite_args", nargs="*", help="more run.py arguments (after --)")
    args = parser.parse_args()

    if shutil.which(args.valgrind) is None:
        print(f"{args.valgrind} not found: skipped")
        return 77

    logs = tempfile.mkdtemp(prefix="wsx-valgrind-")
    try:
        valgrind = [args.valgrind, "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                    "--error-exitcode=99", f"--log-file={os.path.join(logs, 'valgrind.%p.log')}"]
        server = valgrind + [args.server, "--port", "0", "--max-size", "1048576"]
        suite = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py"),
                 "--server-cmd", shlex.join(server), "--time-scale", str(args.time_scale)] + args.suite_args
        result = subprocess.run(suite, stdout=subprocess.PIPE, text=True)
        output = result.stdout.rstrip("\n").split("\n")
        # run.py's own closing line is folded into ours.
        counts = re.fullmatch(r"(\d+) passed, (\d+) failed", output[-1]) if output else None
        print("\n".join(output[:-1] if counts else output))
        passed, failed = (int(counts.group(1)), int(counts.group(2))) if counts else (0, 1)

        print("\nvalgrind:")
        names = sorted(n for n in os.listdir(logs) if n.endswith(".log"))
        if not names:
            print("  no valgrind log was written")
            failed += 1
        for name in names:
            ok, lines = check_log(os.path.join(logs, name))
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
            for line in lines:
                print(f"        {line}")
            passed, failed = passed + ok, failed + (not ok)
        if args.keep_logs:
            os.makedirs(args.keep_logs, exist_ok=True)
            for name in names:
                shutil.copy(os.path.join(logs, name), args.keep_logs)
        print()
        print(f"{passed} passed, {failed} failed")
        return 0 if failed == 0 and result.returncode == 0 else 1
    finally:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
