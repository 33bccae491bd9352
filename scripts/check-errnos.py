#!/usr/bin/env python3
"""Checks that the docs and the headers name the same errors.

For every public function, the errors its header comment names (-EINVAL,
-ENOMEM, ...) are the contract. This script reports:
  1. a docs/*.md line that names exactly one public function and some
     errors, where an error is not in that function's header comment (the
     docs promise an error the header does not);
  2. an error a header comment names that appears nowhere in the sources
     of the libraries (a promise no code can keep, such as a renamed
     errno).
Usage: scripts/check-errnos.py [ROOT]; exit status 1 when anything is
reported.
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERR = re.compile(r"-E[A-Z0-9]{2,}\b")
DECL = re.compile(r"MOIRAI_[A-Z]+_API\b[^;{]*?\b(moirai_[a-z0-9_]+)\s*\(", re.S)


def header_contracts():
    """function name -> set of errors named in the comment above it."""
    contracts = {}
    for path in glob.glob(os.path.join(root, "moirai-*/include/moirai/**/*.h"), recursive=True):
        text = open(path, encoding="utf-8").read()
        for m in DECL.finditer(text):
            name = m.group(1)
            before = text[: m.start()]
            end = before.rstrip().rfind("*/")
            errs = set()
            if end >= 0 and before[end + 2 :].strip() == "":
                start = before.rfind("/*", 0, end)
                for line in before[start:end].splitlines():
                    errs.update(ERR.findall(line))
            contracts.setdefault(name, set()).update(errs)
    return contracts


# Errors that only the kernel (or libuv, which returns -errno) produces and
# the library passes on unchanged, so no source file names them: file
# system calls (moirai-async's fs), socket queries, cgroup files.
PASSED_ON = {"ENOTDIR", "ENOTEMPTY", "EXDEV", "ELOOP", "EFBIG", "ENOTSOCK", "EROFS"}


def source_errnos():
    found = set(PASSED_ON)
    for path in glob.glob(os.path.join(root, "moirai-*/src/**/*.[ch]"), recursive=True):
        found.update(re.findall(r"\bE[A-Z0-9]{2,}\b", open(path, encoding="utf-8").read()))
    return found


def main():
    contracts = header_contracts()
    problems = []
    for path in sorted(glob.glob(os.path.join(root, "docs/*.md"))):
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            names = set(re.findall(r"`(moirai_[a-z0-9_]+)(?:\(\))?`", line))
            names &= set(contracts)
            errs = set(ERR.findall(line))
            if len(names) != 1 or not errs:
                continue
            name = names.pop()
            if not contracts[name]:
                continue  # the header states no errors: nothing to compare
            for e in sorted(errs - contracts[name]):
                problems.append(f"{os.path.relpath(path, root)}:{n}: {name}: the docs name {e}, "
                                f"its header comment does not ({', '.join(sorted(contracts[name]))})")
    known = source_errnos()
    for name, errs in sorted(contracts.items()):
        for e in sorted(errs):
            if e[1:] not in known:
                problems.append(f"{name}: its header names {e}, which no source file uses")
    for p in problems:
        print(p)
    print(f"check-errnos: {len(contracts)} functions, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
