#!/usr/bin/env python3
"""Doxygen INPUT_FILTER: lets Doxygen read Moirai's plain C comments.

The headers document every public declaration with an ordinary /* */
comment right above it (CONTRIBUTING.md, "What every public declaration
says"), and each header opens with a comment describing the file. Doxygen
only reads /** */ comments, so this filter rewrites, in the text Doxygen
sees (never the file itself):

  - the comment that opens the file into "/** @file" followed by its text;
  - a comment that ends on the line right before a declaration (a line
    that is neither blank nor a preprocessor guard) into "/**", so it
    documents that declaration;
  - a comment that follows a member on the same line ("int x; /* ... */")
    into "/**<", so it documents that member.

A comment followed by a blank line is a section note, not documentation,
and stays as it is. Everything else passes through unchanged, line for
line, so Doxygen's warnings point at the real lines.

Usage (Doxygen calls it): doxygen-filter.py FILE
"""
import re
import sys


def comment_end(lines, i, col):
    """Index of the line where the comment opened at lines[i][col] ends."""
    j = i
    while "*/" not in lines[j][(col + 2 if j == i else 0):] and j + 1 < len(lines):
        j += 1
    return j


def run_after(lines, j):
    """The lines after a comment ending on line j, up to a blank line, a
    line with a comment of its own, a closing brace or a preprocessor
    conditional: the declarations the comment describes."""
    k = j + 1
    while k < len(lines):
        t = lines[k].strip()
        if not t or "/*" in t or t.startswith(("}", "#if", "#endif", "#else")):
            break
        k += 1
    return j + 1, k


def count_declarations(lines, a, b):
    """Declarations in lines[a:b] if they are a flat list (no braces, no
    comments, no multi-line macros), else 0."""
    n = 0
    for t in (x.strip() for x in lines[a:b]):
        # A brace opens a body, a backslash continues a macro: neither can
        # take the group's closing marker at its end.
        if "{" in t or "/*" in t or t.endswith("\\"):
            return 0
        if t.startswith("#define") or t.endswith(";"):
            n += 1
    return n


def struct_bodies(lines):
    """(open, close) line indexes of each struct or union body whose opening
    brace ends a line that declares it."""
    out = []
    for i, line in enumerate(lines):
        if re.search(r"\b(struct|union)\b[^;()]*\{\s*$", line):
            depth = 0
            for k in range(i, len(lines)):
                depth += lines[k].count("{") - lines[k].count("}")
                if depth == 0:
                    out.append((i, k))
                    break
    return out


def main(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = list(lines)

    # A struct documented as a whole, whose members have no comment of
    # their own (its comment describes them, as moirai_park_hook_t's does):
    # each member points the reader there.
    for first, last in struct_bodies(lines):
        body = lines[first + 1:last]
        before = lines[first - 1].rstrip() if first > 0 else ""
        if before.endswith("*/") and not any("/*" in x for x in body):
            for k in range(first + 1, last):
                if lines[k].rstrip().endswith(";"):
                    out[k] = out[k] + " /**< Described with the struct. */"

    close_before = set()
    seen_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        start = re.match(r"^(\s*)/\*(?![*!])", line)
        if start:
            col = len(start.group(1))
            j = comment_end(lines, i, col)
            a, b = run_after(lines, j)
            documents = b > a
            if not seen_code:
                # The file's own description. "@file" goes last, on the
                # closing line, so no line is added.
                out[i] = line[:col] + "/**" + line[col + 2:]
                k = out[j].rindex("*/")
                out[j] = out[j][:k] + " @file */" + out[j][k + 2:]
            elif documents:
                opener = "/**"
                if count_declarations(lines, a, b) > 1:
                    # One comment over several declarations (moirai_malloc
                    # and its siblings): a member group, whose first
                    # member's text the others share (DISTRIBUTE_GROUP_DOC).
                    # The closing marker opens the line after the group:
                    # at the end of a #define it would be part of the macro.
                    opener = "/**@{*/ /**"
                    close_before.add(b)
                out[i] = line[:col] + opener + line[col + 2:]
            seen_code = True
            i = j + 1
            continue
        stripped = line.strip()
        if stripped:
            seen_code = True
            # A member or macro documented on its own line:
            # "int x; /* ... */", "#define X 1 /* ... */".
            if stripped.startswith("#define"):
                m = re.search(r"(\s)/\*(?![*!<])", line)
            else:
                m = re.search(r"([;,{]\s*)/\*(?![*!<])", line)
            if m:
                out[i] = line[:m.start()] + m.group(1) + "/**<" + line[m.end():]
        i += 1
    for k in close_before:
        if k < len(out):
            out[k] = "/**@}*/ " + out[k]
        else:
            out.append("/**@}*/")
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
