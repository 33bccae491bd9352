#!/usr/bin/env python3
"""Checks the live-allocation check (live.c) on live_leak.c's tests.

Usage: check_live_leak.py LIVE_LEAK_BINARY

The two tests that leave a block live must fail, each naming one block of
its size; the other three must pass. Exits 1 and says why otherwise."""
import re
import subprocess
import sys

out = subprocess.run([sys.argv[1], "--verbose", "-j1"], capture_output=True, text=True,
                     timeout=120)
text = out.stdout + out.stderr
expect = {
    "a_block_left_live_fails_the_test": ("FAIL", 24),
    "a_block_made_by_calloc_and_grown_by_realloc_is_counted": ("FAIL", 4000),
    "blocks_freed_by_the_end_pass": ("PASS", None),
    "a_block_freed_by_the_teardown_passes": ("PASS", None),
    "an_unchecked_test_is_not_checked": ("PASS", None),
}
bad = []
for name, (result, size) in expect.items():
    if not re.search(r"\[%s\] live::%s" % (result, name), text):
        bad.append("%s: expected %s" % (name, result))
    if size is not None:
        m = re.search(r"live/%s: 1 block\(s\) made during the test are still live:\n"
                      r"  live block 0x[0-9a-f]+ of (\d+) bytes" % name, text)
        if not m or int(m.group(1)) != size:
            bad.append("%s: expected one live block of %d bytes named" % (name, size))
if bad:
    print(text)
    print("\n".join(bad))
    sys.exit(1)
print("the live-allocation check failed exactly the two leaking tests")
