#!/usr/bin/env python3
"""psql's tab completion against a running vectorgate: types into psql on a pseudo-terminal
and checks what readline completed from the catalog queries psql sent.
Usage: psql_completion.py HOST PORT (the server has psql_session.sql's `docs` table)."""
import os
import pty
import select
import sys
import time

host, port = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "dumb"
    os.execvp("psql", ["psql", "-X", "-h", host, "-p", port, "-U", "tester", "vectorgate"])


def read(seconds):
    out = b""
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out.decode(errors="replace")


def complete(typed, want, seconds=3.0):
    """Type `typed` (ending in TAB), wait for the completion, clear the line."""
    os.write(fd, typed.encode())
    got = ""
    end = time.time() + seconds
    while time.time() < end and want not in got:
        got += read(0.3)
    os.write(fd, b"\x15")  # clear the line
    read(0.3)
    return want in got, got


prompt = read(3.0)
failed = False
if "vectorgate=#" not in prompt:
    print(f"psql completion: no prompt: {prompt!r}")
    failed = True
for typed, want in [
    ("SELECT * FROM do\t", "SELECT * FROM docs "),
    ("SELECT * FROM docs WHERE ti\t", "title "),
    # `docs` and its index `docs_pkey`: the common prefix is completed (after a bell).
    ("\\d do\t", "cs"),
    ("INSERT INTO do\t", "INSERT INTO docs "),
]:
    ok, got = complete(typed, want)
    if not ok:
        print(f"psql completion: {typed!r} did not complete to {want!r}: {got!r}")
        failed = True
os.write(fd, b"\\q\n")
read(0.5)
os.waitpid(pid, 0)
if failed:
    sys.exit(1)
print("psql tab completion: ok")
