#!/usr/bin/env bash
# The packaging check: no module is forgotten. For every module the
# top-level meson.build builds (subdir('moirai-<name>')), it fails unless
#
#   - debian/control has its two binary packages, libmoirai-<name><soversion>
#     (the name carries the soversion of moirai-<name>/meson.build) and
#     libmoirai-<name>-dev, each with an .install file;
#   - libmoirai-<name>-dev Depends on what moirai-<name>.pc Requires and
#     Requires.private (sibling modules' -dev packages, and the Debian -dev
#     package of each external library, see pc_to_deb below), and on its
#     library package;
#   - debian/libmoirai-<name><soversion>.symbols exists and describes that
#     library;
#   - it has a consumer test: a line in debian/tests/consumers' table whose
#     program exists in tests/package/, its -dev package in the Depends of
#     debian/tests/control, and its entry in tests/package/meson.build (the
#     in-tree 'package' suite);
#   - its linker version script has a versioned node MOIRAI_<NAME>_<x.y>
#     and abi/<name>.abi (the ABI baseline) exists.
#
# It also fails on packages for modules that no longer exist, and when
# debian/changelog's version is not the project's version. Every problem
# is listed, each with the file to fix; docs/packaging.md has the steps.
#
# Usage: scripts/check-packaging.sh [BUILD_DIR]
#   BUILD_DIR (default build/) is a configured build tree: its generated
#   meson-private/moirai-<name>.pc files are the Requires to mirror.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
cd "$moirai_root"

builddir=${1:-$moirai_root/build}
specs=()
while read -r m; do
    specs+=("$m:$(moirai_module_field "$m" soversion)")
done < <(moirai_modules)
if ((${#specs[@]} == 0)); then
    echo "check-packaging: found no subdir('moirai-...') in meson.build" >&2
    exit 1
fi

python3 - "$builddir" "$(moirai_project_version)" "${specs[@]}" <<'PY'
import os, re, sys

builddir, project_version, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
problems = []

def problem(module, text):
    problems.append(f"moirai-{module}: {text}" if module else text)

def read(path):
    with open(path) as f:
        return f.read()

# The Debian -dev package that provides each external pkg-config module a
# moirai .pc file may require. A new external dependency adds its line.
pc_to_deb = {
    "liburcu-memb": "liburcu-dev",
    "liburcu-cds": "liburcu-dev",
    "liburcu": "liburcu-dev",
    "libsodium": "libsodium-dev",
    "libuv": "libuv1-dev",
    "numa": "libnuma-dev",
}

# debian/control as paragraphs of fields (continuation lines joined).
paragraphs = []
for block in re.split(r"\n\s*\n", read("debian/control")):
    fields, key = {}, None
    for line in block.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    if fields:
        paragraphs.append(fields)
packages = {p["Package"]: p for p in paragraphs if "Package" in p}

def depends_names(field):
    names = set()
    for alt in field.split(","):
        alt = alt.strip()
        if alt:
            names.add(re.split(r"[\s(\[:]", alt.split("|")[0].strip())[0])
    return names

def closure(pkg):
    # Every package that installing `pkg` brings, through the Depends of
    # the packages built here.
    seen, todo = set(), [pkg]
    while todo:
        p = todo.pop()
        for d in depends_names(packages.get(p, {}).get("Depends", "")):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen

def pc_requires(module):
    pc = os.path.join(builddir, "meson-private", f"moirai-{module}.pc")
    if not os.path.exists(pc):
        problem(module, f"{pc} not found (configure {builddir} first; its .pc files are what -dev must mirror)")
        return None
    names = set()
    for line in read(pc).splitlines():
        m = re.match(r"(Requires|Requires\.private):\s*(.*)", line)
        if m:
            for item in m.group(2).split(","):
                item = item.strip()
                if item:
                    names.add(re.split(r"[\s<>=]", item)[0])
    return names

# The autopkgtest's table: "name consumer" lines between modules=' and '.
consumers_src = read("debian/tests/consumers")
table = re.search(r"^modules='\n(.*?)^'", consumers_src, re.S | re.M)
consumers = {}
if table:
    for line in table.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2:
            consumers[parts[0]] = parts[1]
else:
    problem(None, "debian/tests/consumers: no modules='...' table found")
tests_control = read("debian/tests/control")
test_depends = set()
for m in re.finditer(r"^Depends:(.*?)(?=^\S|\Z)", tests_control, re.S | re.M):
    test_depends |= depends_names(" ".join(m.group(1).split()))
package_meson = read("tests/package/meson.build")

modules = []
for spec in specs:
    name, soversion = spec.split(":")
    modules.append(name)
    lib, dev = f"libmoirai-{name}{soversion}", f"libmoirai-{name}-dev"
    if not soversion:
        problem(name, f"moirai-{name}/meson.build declares no {name}_soversion")
        continue

    # The binary packages and what goes into them.
    for pkg in (lib, dev):
        if pkg not in packages:
            problem(name, f"debian/control has no package {pkg}")
        if not os.path.exists(f"debian/{pkg}.install"):
            problem(name, f"debian/{pkg}.install is missing")
    stale = [p for p in packages
             if re.fullmatch(rf"libmoirai-{name}\d+", p) and p != lib]
    for p in stale:
        problem(name, f"debian/control still has {p}, but the soversion is {soversion} (rename it {lib})")

    # -dev Depends mirror the pkg-config Requires.
    if dev in packages:
        have = depends_names(packages[dev].get("Depends", ""))
        want = {lib}
        requires = pc_requires(name)
        for req in sorted(requires or ()):
            if req.startswith("moirai-"):
                want.add(f"lib{req}-dev")
            elif req in pc_to_deb:
                want.add(pc_to_deb[req])
            else:
                problem(name, f"moirai-{name}.pc requires '{req}', which scripts/check-packaging.sh cannot map to a Debian package (add it to pc_to_deb)")
        # An external library may come through a sibling's -dev package
        # (meson repeats sync's liburcu in sched's Requires.private).
        reach = closure(dev)
        for missing in sorted(want - have):
            if missing.startswith("libmoirai-") or missing not in reach:
                problem(name, f"{dev} must Depend on {missing} (debian/control), as moirai-{name}.pc requires it")
        for extra in sorted(d for d in have - want if d.startswith("libmoirai-")):
            problem(name, f"{dev} Depends on {extra}, which moirai-{name}.pc does not require")

    # The symbols file.
    symbols = f"debian/{lib}.symbols"
    if not os.path.exists(symbols):
        problem(name, f"{symbols} is missing (scripts/update-symbols.sh {name} writes it)")
    else:
        first = read(symbols).splitlines()[0] if read(symbols) else ""
        if not first.startswith(f"libmoirai-{name}.so.{soversion} {lib} "):
            problem(name, f"{symbols} starts with '{first}', not 'libmoirai-{name}.so.{soversion} {lib} ...'")
        if f"* Build-Depends-Package: {dev}" not in read(symbols):
            problem(name, f"{symbols} lacks '* Build-Depends-Package: {dev}'")

    # The consumer test, in the autopkgtest and in the in-tree suite.
    consumer = consumers.get(name)
    if consumer is None:
        problem(name, "debian/tests/consumers has no line for it in its modules table")
    elif not os.path.exists(f"tests/package/{consumer}"):
        problem(name, f"debian/tests/consumers names tests/package/{consumer}, which does not exist")
    if dev not in test_depends:
        problem(name, f"debian/tests/control does not Depend on {dev}")
    if not re.search(rf"^\s*'{name}':\s*\[", package_meson, re.M):
        problem(name, "tests/package/meson.build has no entry in package_modules")

    # Versioned symbols and the ABI baseline.
    mapfile = f"moirai-{name}/moirai-{name}.map"
    if not os.path.exists(mapfile) or not re.search(
            rf"^MOIRAI_{name.upper()}_\d+\.\d+\s*\{{", read(mapfile), re.M):
        problem(name, f"{mapfile} has no versioned node MOIRAI_{name.upper()}_<major>.<minor>")
    if not os.path.exists(f"abi/{name}.abi"):
        problem(name, f"abi/{name}.abi is missing (scripts/update-abi.sh {name} records it)")

# Packages of modules that are gone.
for pkg in packages:
    m = re.fullmatch(r"libmoirai-([a-z0-9]+?)(\d+|-dev)", pkg)
    if m and m.group(1) not in modules:
        problem(m.group(1), f"debian/control has {pkg}, but meson.build builds no moirai-{m.group(1)}")

# One version for the project and the Debian package.
changelog = read("debian/changelog").splitlines()[0]
m = re.match(r"moirai \(([^)]+)\)", changelog)
debian_version = m.group(1) if m else "?"
if debian_version.split("-")[0] != project_version:
    problem(None, f"debian/changelog is at {debian_version}, meson.build's project() at {project_version} (dch -v {project_version})")

for p in problems:
    print("FAIL:", p)
if problems:
    print(f"check-packaging: {len(problems)} problem(s); docs/packaging.md says how to add a module")
    sys.exit(1)
print(f"check-packaging: {len(modules)} modules, each with its packages, symbols file, "
      f"consumer test and ABI baseline: {', '.join(modules)}")
PY
