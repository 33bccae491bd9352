#!/usr/bin/env python3
"""Checks that run-test.sh leaves no process behind when meson stops it.

Usage: check_timeout_kill.py RUN_TEST_SH TIMEOUT_HANG_BINARY

Starts the wrapper on timeout_hang.c's never-ending test the way meson
starts a test (a new session), waits until the test's four processes
(Criterion's runner, the test's worker, a child in a session of its own
and its child) have written their pids, then stops the wrapper the way
meson stops a test that timed out (mesonbuild/mtest.py, _kill): SIGTERM
to the process group, half a second, SIGKILL to the group. Every one of
the four must then be gone (or a zombie) within a few seconds. Exits 1,
after killing them itself, if any is left."""
import os
import signal
import subprocess
import sys
import tempfile
import time


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(') ', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ('Z', 'X')


def main():
    wrapper, binary = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        pids_path = os.path.join(tmp, 'pids')
        env = dict(os.environ, MOIRAI_HANG_PIDS=pids_path)
        proc = subprocess.Popen([wrapper, binary, '--jobs', '1'], env=env,
                                start_new_session=True)
        pids = []
        deadline = time.monotonic() + 30
        while len(pids) < 4:
            if time.monotonic() > deadline or proc.poll() is not None:
                print('the hanging test did not start its processes', file=sys.stderr)
                os.killpg(proc.pid, signal.SIGKILL)
                return 1
            time.sleep(0.05)
            try:
                with open(pids_path) as f:
                    pids = [int(line) for line in f if line.strip()]
            except FileNotFoundError:
                pass
        print('test processes:', pids)
        # As meson does it.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            print('the wrapper outlived SIGTERM by 0.5 s; SIGKILL', file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in pids if alive(p)]
        if left:
            print('left behind:', left, file=sys.stderr)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return 1
        print('none left behind')
        return 0


if __name__ == '__main__':
    sys.exit(main())
