#!/usr/bin/env bash
# Builds an image with scripts/image-layout.sh and checks it as a container
# runtime would see it: oci-layout, index.json, manifest and config are valid
# JSON of the right media types, every blob's digest and size match, each
# layer's diff_id is the digest of its uncompressed tar, the layers unpack, the
# entrypoint is there and executable, the user is 65532 (in the config and in
# /etc/passwd), every library the binaries need (DT_NEEDED, followed through the
# libraries found, and the program interpreter) is in the image's own library
# directories, and each binary starts with the image's loader and libraries
# only. It also checks that a second build gives the same digests, that the
# --archive tarball is a complete OCI layout plus docker-save manifest, and the
# Dockerfile and .dockerignore.
#
#   scripts/test-image-layout.sh [--binary PATH]...
#
# Without --binary it uses target/release/deadbolt-operator and -sidecar when
# both exist, and otherwise compiles two tiny programs with cc (one linked to
# zlib, so a library beyond the base has to be found and added).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
binaries=()
mode=given
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binaries+=("$2"); shift 2 ;;
    --binary=*) binaries+=("${1#*=}"); shift ;;
    *) echo "usage: $0 [--binary PATH]..." >&2; exit 2 ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/deadbolt-image-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ${#binaries[@]} -eq 0 ]; then
  if [ -x target/release/deadbolt-operator ] && [ -x target/release/deadbolt-sidecar ]; then
    # Copies, so a build running meanwhile cannot change them under the test.
    cp target/release/deadbolt-operator target/release/deadbolt-sidecar "$work/"
    binaries=("$work/deadbolt-operator" "$work/deadbolt-sidecar")
    mode=release
  else
    command -v cc >/dev/null || { echo "test-image-layout: no release build and no cc to build a test program" >&2; exit 1; }
    mkdir -p "$work/src"
    cat >"$work/src/main.c" <<'EOF'
#include <stdio.h>
#include <string.h>
extern const char *zlibVersion(void);
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("deadbolt-test-main 1 (zlib %s)\n", zlibVersion()); return 0; }
  return 1;
}
EOF
    cat >"$work/src/helper.c" <<'EOF'
#include <stdio.h>
int main(void) { printf("deadbolt-test-helper 1\n"); return 0; }
EOF
    # libz.so.1 by soname, so no -dev package is needed.
    cc -O2 -o "$work/deadbolt-test-main" "$work/src/main.c" -l:libz.so.1
    cc -O2 -o "$work/deadbolt-test-helper" "$work/src/helper.c"
    binaries=("$work/deadbolt-test-main" "$work/deadbolt-test-helper")
    mode=cc
  fi
fi
args=()
for b in "${binaries[@]}"; do args+=(--binary "$b"); done
tag=localhost/deadbolt-layout-test:1

echo "==> scripts/image-layout.sh with ${binaries[*]##*/} ($mode binaries)"
scripts/image-layout.sh "$work/layout" "${args[@]}" --tag "$tag" --archive "$work/image.tar" >"$work/digest1"
echo "==> again, for determinism"
SOURCE_DATE_EPOCH=0 scripts/image-layout.sh "$work/layout2" "${args[@]}" --tag "$tag" >"$work/digest2" 2>/dev/null

python3 - "$work" "$tag" "${binaries[@]}" <<'PY'
import gzip, hashlib, io, json, os, re, stat, subprocess, sys, tarfile

work, tag, binaries = sys.argv[1], sys.argv[2], sys.argv[3:]
layout, root = os.path.join(work, "layout"), os.path.join(work, "root")
LIB_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
            "usr/lib/aarch64-linux-gnu", "lib64", "lib", "usr/lib", "usr/local/lib"]
checks = 0


def ok(message):
    global checks
    checks += 1
    print("ok   " + message)


def fail(message):
    sys.exit("FAIL " + message)


def blob(descriptor, media_type):
    if descriptor.get("mediaType") != media_type:
        fail("media type %r, want %r" % (descriptor.get("mediaType"), media_type))
    algorithm, digest = descriptor["digest"].split(":", 1)
    path = os.path.join(layout, "blobs", algorithm, digest)
    if not os.path.isfile(path):
        fail("blob %s is missing" % descriptor["digest"])
    data = open(path, "rb").read()
    if hashlib.sha256(data).hexdigest() != digest:
        fail("blob %s does not match its digest" % descriptor["digest"])
    if len(data) != descriptor["size"]:
        fail("blob %s is %d bytes, the descriptor says %d" % (descriptor["digest"], len(data), descriptor["size"]))
    return data


if json.load(open(os.path.join(layout, "oci-layout"))) != {"imageLayoutVersion": "1.0.0"}:
    fail("oci-layout")
ok("oci-layout is imageLayoutVersion 1.0.0")
index = json.load(open(os.path.join(layout, "index.json")))
if index.get("schemaVersion") != 2 or len(index.get("manifests", [])) != 1:
    fail("index.json: %r" % index)
entry = index["manifests"][0]
if entry["annotations"].get("io.containerd.image.name") != tag:
    fail("index.json names %r, want %r" % (entry["annotations"], tag))
ok("index.json: one manifest, named %s" % tag)
manifest = json.loads(blob(entry, "application/vnd.oci.image.manifest.v1+json"))
if manifest.get("schemaVersion") != 2:
    fail("manifest schemaVersion")
config = json.loads(blob(manifest["config"], "application/vnd.oci.image.config.v1+json"))
layers = [blob(d, "application/vnd.oci.image.layer.v1.tar+gzip") for d in manifest["layers"]]
referenced = {entry["digest"], manifest["config"]["digest"]} | {d["digest"] for d in manifest["layers"]}
present = {"sha256:" + n for n in os.listdir(os.path.join(layout, "blobs", "sha256"))}
if referenced != present:
    fail("blobs: unreferenced %s, missing %s" % (present - referenced, referenced - present))
ok("manifest, config and %d layers: media types right, every digest and size matches, no stray blobs" % len(layers))

arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
cfg = config["config"]
if (config["os"], config["architecture"]) != ("linux", arch):
    fail("platform %s/%s" % (config["os"], config["architecture"]))
user = cfg.get("User", "")
if user.split(":")[0] != "65532":
    fail("config User is %r, want 65532" % user)
if not any(e.startswith("PATH=") for e in cfg.get("Env", [])):
    fail("config Env has no PATH")
entrypoint = cfg.get("Entrypoint") or []
want_entry = "/usr/local/bin/" + os.path.basename(binaries[0])
if entrypoint != [want_entry]:
    fail("Entrypoint %r, want [%r]" % (entrypoint, want_entry))
diff_ids = config["rootfs"]["diff_ids"]
raw_layers = [gzip.decompress(layer) for layer in layers]
if diff_ids != ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in raw_layers]:
    fail("rootfs.diff_ids do not match the uncompressed layers")
ok("config: %s/%s, User %s, Entrypoint %s, Env PATH, %d diff_ids match the layers"
   % (config["os"], config["architecture"], user, entrypoint, len(diff_ids)))

# Unpack, in order, as a runtime would (no whiteouts are expected).
os.makedirs(root)
owners = {}
for raw in raw_layers:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            name = os.path.normpath(member.name)
            if name.startswith("..") or os.path.isabs(name) or "/.wh." in "/" + name:
                fail("layer entry %r" % member.name)
            owners[name] = (member.uid, member.gid, member.mode)
            target = os.path.join(root, name)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target):
                os.remove(target)
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                os.link(os.path.join(root, member.linkname), target)
            else:
                with open(target, "wb") as f:
                    f.write(tar.extractfile(member).read())
                os.chmod(target, member.mode & 0o777)
ok("%d layers unpack (%d entries)" % (len(raw_layers), len(owners)))


def resolve(path, depth=0):
    """An image path with symlinks followed inside the image; None if it is not there."""
    parts = [p for p in path.strip("/").split("/") if p]
    current = ""
    for i, part in enumerate(parts):
        candidate = os.path.join(current, part)
        full = os.path.join(root, candidate)
        if os.path.islink(full):
            if depth > 40:
                return None
            link = os.readlink(full)
            base = "" if link.startswith("/") else current
            rest = "/".join(parts[i + 1:])
            return resolve(os.path.join(base, link.lstrip("/"), rest), depth + 1)
        if not os.path.lexists(full):
            return None
        current = candidate
    return current


entry_rel = resolve(want_entry)
if entry_rel is None or not os.path.isfile(os.path.join(root, entry_rel)):
    fail("entrypoint %s is not in the image" % want_entry)
mode = owners[want_entry.lstrip("/")][2]
if not mode & 0o111:
    fail("entrypoint %s is not executable (mode %o)" % (want_entry, mode))
ok("entrypoint %s exists and is executable (mode %o)" % (want_entry, mode & 0o7777))
passwd = open(os.path.join(root, "etc/passwd")).read()
if not re.search(r"^nonroot:x:65532:65532:", passwd, re.M):
    fail("/etc/passwd has no nonroot user 65532")
if not re.search(r"^nonroot:x:65532:", open(os.path.join(root, "etc/group")).read(), re.M):
    fail("/etc/group has no nonroot group 65532")
if owners.get("home/nonroot", (None,))[0:2] != (65532, 65532):
    fail("/home/nonroot is not owned by 65532")
if owners.get("tmp", (0, 0, 0))[2] & 0o7777 != 0o1777:
    fail("/tmp is not 1777")
bundle = open(os.path.join(root, "etc/ssl/certs/ca-certificates.crt")).read()
if bundle.count("BEGIN CERTIFICATE") < 50:
    fail("the CA bundle has %d certificates" % bundle.count("BEGIN CERTIFICATE"))
for shell in ("bin/sh", "bin/bash", "usr/bin/sh"):
    if resolve(shell):
        fail("the image has a shell: /" + shell)
ok("user nonroot 65532 in /etc/passwd and /etc/group, /home/nonroot owned by it, /tmp 1777, "
   "%d CA certificates, no shell" % bundle.count("BEGIN CERTIFICATE"))


def elf_deps(path):
    d = subprocess.run(["readelf", "-d", "-W", path], capture_output=True, text=True).stdout
    names = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", d)
    runpath = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:run)?path: \[([^\]]+)\]", d)
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]",
                       subprocess.run(["readelf", "-l", "-W", path], capture_output=True, text=True).stdout)
    return names, interp.group(1) if interp else None, [p for r in runpath for p in r.split(":")]


interpreters = set()
for binary in binaries:
    image_path = "/usr/local/bin/" + os.path.basename(binary)
    rel = resolve(image_path)
    if rel is None:
        fail("%s is not in the image" % image_path)
    if open(os.path.join(root, rel), "rb").read() != open(binary, "rb").read():
        fail("%s differs from %s" % (image_path, binary))
    found, todo, seen = {}, [rel], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        names, interp, runpath = elf_deps(os.path.join(root, current))
        if interp:
            target = resolve(interp)
            if target is None:
                fail("%s: interpreter %s is not in the image" % (current, interp))
            interpreters.add((interp, target))
        for name in names:
            hit = None
            for d in [r.replace("$ORIGIN", "/" + os.path.dirname(current)).lstrip("/") for r in runpath] + LIB_DIRS:
                hit = resolve(os.path.join(d, name))
                if hit:
                    break
            if not hit:
                fail("%s needs %s, which is not in the image's library directories" % (current, name))
            found[name] = hit
            todo.append(hit)
    ok("%s: every needed library is in the image: %s" % (
        os.path.basename(binary), ", ".join("%s -> /%s" % kv for kv in sorted(found.items())) or "none"))

# Run each binary with the image's loader and libraries (not the host's).
for interp, target in sorted(interpreters):
    loader = os.path.join(root, target)
    libpath = ":".join(os.path.join(root, d) for d in LIB_DIRS if os.path.isdir(os.path.join(root, d)))
    for binary in binaries:
        program = os.path.join(root, resolve("/usr/local/bin/" + os.path.basename(binary)))
        listing = subprocess.run([loader, "--inhibit-cache", "--library-path", libpath, "--list", program],
                                 capture_output=True, text=True)
        paths = re.findall(r"=> (/\S+)", listing.stdout)
        outside = [p for p in paths if not p.startswith(root + "/")]
        if listing.returncode != 0 or outside:
            fail("%s resolves libraries outside the image: %s %s" % (program, outside, listing.stderr))
        argv = [loader, "--inhibit-cache", "--library-path", libpath, program]
        if os.path.basename(binary) != "deadbolt-test-helper":
            argv.append("--version")
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if run.returncode != 0:
            fail("%s did not run: %s" % (os.path.basename(binary), run.stderr.strip()))
        ok("%s runs on the image's %s and its %d libraries: %s" % (
            os.path.basename(binary), interp, len(paths), run.stdout.strip().splitlines()[0]))

# Determinism: the second build, into another directory, has the same digests.
d1 = open(os.path.join(work, "digest1")).read().strip()
d2 = open(os.path.join(work, "digest2")).read().strip()
if d1 != d2 or open(os.path.join(work, "layout", "index.json")).read() != open(os.path.join(work, "layout2", "index.json")).read():
    fail("two builds of the same inputs differ: %s, %s" % (d1, d2))
ok("a second build gives the same manifest digest %s" % d1)

# The archive: the same layout, plus a docker-save manifest.json.
with tarfile.open(os.path.join(work, "image.tar")) as tar:
    names = set(tar.getnames())
    want = {"oci-layout", "index.json", "manifest.json"} | {"blobs/sha256/" + n for n in os.listdir(os.path.join(layout, "blobs", "sha256"))}
    if not want <= names:
        fail("the archive lacks %s" % sorted(want - names))
    docker = json.load(tar.extractfile("manifest.json"))
    if docker[0]["RepoTags"] != [tag] or docker[0]["Config"] != "blobs/sha256/" + manifest["config"]["digest"][7:]:
        fail("manifest.json %r" % docker)
    for member in tar.getmembers():
        if member.isfile() and member.name.startswith("blobs/") and \
                hashlib.sha256(tar.extractfile(member).read()).hexdigest() != member.name.rsplit("/", 1)[1]:
            fail("archive blob %s" % member.name)
ok("--archive: OCI layout (%d blobs) plus docker-save manifest.json for %s, digests match" % (len(want) - 3, tag))
print("checks: %d" % checks)
PY

for tool in ctr podman skopeo; do
  if command -v "$tool" >/dev/null; then
    case $tool in
      skopeo) skopeo inspect "oci-archive:$work/image.tar" >/dev/null && echo "ok   skopeo inspect oci-archive: reads it" ;;
      *) echo "note $tool is installed; import with: $tool ... $work/image.tar (not run: it changes the host's image store)" ;;
    esac
  fi
done

echo "==> Dockerfile and .dockerignore"
python3 - <<'PY'
import fnmatch, re, sys
docker = open("Dockerfile").read()
for pattern, what in [
    (r"(?m)^FROM rust:1-bookworm AS builder$", "builder stage on rust:1-bookworm"),
    (r"cargo build --release --locked -p deadbolt-operator -p deadbolt-sidecar", "release build of both binaries"),
    (r"(?m)^FROM gcr\.io/distroless/cc-debian12:nonroot$", "runtime gcr.io/distroless/cc-debian12:nonroot"),
    (r"(?m)^COPY --from=builder /out/deadbolt-operator /out/deadbolt-sidecar /usr/local/bin/$", "both binaries in /usr/local/bin"),
    (r"(?m)^USER 65532:65532$", "USER 65532"),
    (r'(?m)^ENTRYPOINT \["/usr/local/bin/deadbolt-operator"\]$', "entrypoint deadbolt-operator"),
]:
    if not re.search(pattern, docker):
        sys.exit("FAIL Dockerfile: no " + what)
print("ok   Dockerfile: builder rust:1-bookworm, cargo build --release --locked, distroless cc nonroot, USER 65532, ENTRYPOINT deadbolt-operator")
patterns = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
members = re.search(r"members\s*=\s*\[([^\]]*)\]", open("Cargo.toml").read()).group(1)
needed = ["Cargo.toml", "Cargo.lock"] + [m.strip().strip('"') + "/src/main.rs" for m in members.split(",") if m.strip()]
for path in needed:
    for p in patterns:
        if p.startswith("!"):
            continue
        if fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/"):
            sys.exit("FAIL .dockerignore pattern %r excludes %s, which the build needs" % (p, path))
print("ok   .dockerignore keeps Cargo.toml, Cargo.lock and every workspace member (%s)" % members.replace('"', "").replace(" ", ""))
PY
echo "test-image-layout: all checks passed"
