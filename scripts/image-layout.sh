#!/usr/bin/env bash
# image-layout.sh OUT_DIR [--binary PATH]... [--tag NAME:TAG] [--archive FILE]
#
# Assembles Deadbolt's container image without Docker, as an OCI image layout
# in OUT_DIR (oci-layout, index.json, blobs/sha256/...): the same image the
# Dockerfile builds, from binaries that are already built.
#
#   --binary PATH   a program for /usr/local/bin (repeatable; default
#                   target/release/deadbolt-operator and target/release/deadbolt-sidecar).
#                   The first one is the entrypoint.
#   --tag NAME:TAG  the image name (default ghcr.io/deadbolt-dev/deadbolt:<workspace version>)
#   --archive FILE  also write a tarball of the layout (with a docker-save
#                   manifest.json): `ctr -n k8s.io images import FILE`,
#                   `podman load -i FILE`, `docker load -i FILE`, or
#                   `skopeo copy oci-archive:FILE docker://REGISTRY/NAME:TAG`.
#
# Layers, like gcr.io/distroless/cc-debian12:nonroot:
#   1. base: Debian's libc6, libgcc-s1, netbase and tzdata, the CA bundle built
#      from ca-certificates (/etc/ssl/certs/ca-certificates.crt), /etc/passwd and
#      /etc/group with root, nobody and nonroot (65532), /tmp, /home/nonroot.
#   2. libraries: the Debian packages owning any other shared library the
#      binaries need (found with readelf -d and ldd, owners with dpkg -S); absent
#      when there are none, as for Deadbolt's binaries.
#   3. the binaries.
# Config: User 65532:65532, Entrypoint [/usr/local/bin/<first binary>], Env PATH
# and SSL_CERT_FILE, WorkingDir /home/nonroot.
#
# Packages come from `apt-get download` (cached in $DEADBOLT_IMAGE_CACHE, default
# ~/.cache/deadbolt-image-layout) and are unpacked with `dpkg-deb -x`; no
# maintainer script runs. Every timestamp is $SOURCE_DATE_EPOCH (default 0)
# and layers are gzip-compressed without names or times, so the same binaries
# and package versions give the same digests.
#
# Needs: bash, coreutils, python3 (standard library only), readelf, ldd, dpkg,
# dpkg-deb, apt-get and apt-cache of a Debian release matching the image
# (bookworm, like distroless cc-debian12).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || usage
case $1 in -h|--help|-*) usage ;; esac
out=$1; shift
binaries=()
tag=
archive=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || usage; binaries+=("$2"); shift 2 ;;
    --binary=*) binaries+=("${1#*=}"); shift ;;
    --tag) [ $# -ge 2 ] || usage; tag=$2; shift 2 ;;
    --tag=*) tag=${1#*=}; shift ;;
    --archive) [ $# -ge 2 ] || usage; archive=$2; shift 2 ;;
    --archive=*) archive=${1#*=}; shift ;;
    -h|--help) usage ;;
    *) echo "image-layout: unknown argument $1" >&2; usage ;;
  esac
done
if [ ${#binaries[@]} -eq 0 ]; then
  binaries=("$repo/target/release/deadbolt-operator" "$repo/target/release/deadbolt-sidecar")
fi
if [ -z "$tag" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
  tag=ghcr.io/deadbolt-dev/deadbolt:${version:-dev}
fi
for tool in python3 readelf ldd dpkg dpkg-deb apt-get apt-cache; do
  command -v "$tool" >/dev/null || { echo "image-layout: $tool is needed (a Debian host)" >&2; exit 1; }
done
for binary in "${binaries[@]}"; do
  [ -f "$binary" ] || { echo "image-layout: no such binary: $binary (build it first: cargo build --release --locked -p deadbolt-operator -p deadbolt-sidecar)" >&2; exit 1; }
done

exec python3 - "$out" "$tag" "$archive" "${binaries[@]}" <<'PY'
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

out, name, archive, binaries = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
CACHE = os.environ.get("DEADBOLT_IMAGE_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deadbolt-image-layout")
BASE_PACKAGES = ["libc6", "libgcc-s1", "netbase", "tzdata", "ca-certificates"]
LIB_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
            "usr/lib/aarch64-linux-gnu", "lib64", "lib", "usr/lib"]
# Documentation goes, except each package's copyright file.
PRUNE = re.compile(r"^(usr/share/doc/[^/]+/(?!copyright$)|usr/share/(man|info|lintian|locale|bug|bash-completion|ca-certificates)"
                   r"|usr/lib/[^/]+/gconv|usr/share/zoneinfo/(posix|right)|usr/sbin|etc/ca-certificates"
                   r"|etc/ld\.so\.conf\.d|etc/init\.d|etc/default|etc/cron\.[a-z]+)(/|$)")
ARCH = {62: "amd64", 183: "arm64"}


def say(*words):
    print("image-layout:", *words, file=sys.stderr, flush=True)


def die(message):
    say("error:", message)
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ------------------------------------------------------------ what the binaries need
def elf_machine(path):
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        die("%s is not an ELF program" % path)
    return ARCH.get(int.from_bytes(head[18:20], "little"))


def needed(path):
    """DT_NEEDED names and the program interpreter, from readelf."""
    dynamic = run(["readelf", "-d", "-W", path]).stdout
    names = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", run(["readelf", "-l", "-W", path]).stdout)
    return names, interp.group(1) if interp else None


def resolved_libraries(path):
    """soname -> host path for every library the binary loads (ldd follows the whole closure)."""
    result = run(["ldd", path])
    libs = {}
    for line in result.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(0x", line)
        if m:
            libs[m.group(1)] = m.group(2)
        elif "not found" in line:
            die("%s: %s" % (path, line.strip()))
    return libs


def owner(path):
    """The Debian package that owns a host file (merged /usr or not)."""
    candidates = []
    for p in (path, os.path.realpath(path)):
        candidates += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    for p in candidates:
        r = run(["dpkg", "-S", p])
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                if not line.startswith("diversion"):
                    return line.split(":", 1)[0].split(",")[0].strip()
    return None


# ------------------------------------------------------------ Debian packages
def package_versions(packages):
    r = run(["apt-cache", "show", "--no-all-versions"] + packages)
    info = {}
    for record in r.stdout.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", record, re.M))
        if fields.get("Package") in packages:
            info.setdefault(fields["Package"], (fields["Version"], fields["Architecture"]))
    return info


def fetch(packages):
    """Downloads (or finds in the cache) each package's .deb and unpacks it; {package: dir}."""
    debs = os.path.join(CACHE, "debs")
    os.makedirs(debs, exist_ok=True)
    info = package_versions(packages)
    if len(info) < len(packages):
        say("apt-get update (package lists are missing %s)" % " ".join(p for p in packages if p not in info))
        run(["apt-get", "update", "-qq"])
        info = package_versions(packages)
    missing = [p for p in packages if p not in info]
    if missing:
        die("no Debian package named " + " ".join(missing))
    files = {p: os.path.join(debs, "%s_%s_%s.deb" % (p, v.replace(":", "%3a"), a)) for p, (v, a) in info.items()}
    wanted = ["%s=%s" % (p, info[p][0]) for p in packages if not os.path.exists(files[p])]
    if wanted:
        say("apt-get download " + " ".join(wanted))
        cmd = ["apt-get", "download", "-q"] + (["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []) + wanted
        r = run(cmd, cwd=debs)
        if r.returncode != 0:
            run(["apt-get", "update", "-qq"])
            r = run(cmd, cwd=debs)
        if r.returncode != 0:
            die("apt-get download failed:\n" + r.stderr.strip())
    unpacked = {}
    for p in packages:
        if not os.path.exists(files[p]):
            die("apt-get download did not give " + files[p])
        d = os.path.join(work, "deb", p)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        r = run(["dpkg-deb", "-x", files[p], d])
        if r.returncode != 0:
            die("dpkg-deb -x %s: %s" % (files[p], r.stderr.strip()))
        unpacked[p] = d
    return unpacked, {p: info[p][0] for p in packages}


# ------------------------------------------------------------ layers
class Tree:
    """Image path -> (source path or None for a plain directory, uid, gid, mode or None)."""

    def __init__(self):
        self.entries = {}

    def add_dir(self, root, prune=True):
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for n in sorted(dirs + files):
                rel = os.path.relpath(os.path.join(d, n), root)
                if prune and PRUNE.search(rel):
                    continue
                self.entries[rel] = (os.path.join(d, n), 0, 0, None)
                self.parents(os.path.dirname(rel))

    def add_file(self, src, dest, uid=0, gid=0, mode=None):
        dest = dest.strip("/")
        self.entries[dest] = (src, uid, gid, mode)
        self.parents(os.path.dirname(dest))

    def add_empty_dir(self, dest, uid=0, gid=0, mode=0o755):
        self.entries[dest.strip("/")] = (None, uid, gid, mode)
        self.parents(os.path.dirname(dest.strip("/")))

    def parents(self, rel):
        while rel and rel != ".":
            self.entries.setdefault(rel, (None, 0, 0, 0o755))
            rel = os.path.dirname(rel)


def layer(tree):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(tree.entries):
            src, uid, gid, mode = tree.entries[rel]
            if src is None:
                info = tarfile.TarInfo(rel)
                info.type, info.mode = tarfile.DIRTYPE, mode
            else:
                info = tar.gettarinfo(src, arcname=rel)
                if mode is not None:
                    info.mode = mode
            info.uid, info.gid, info.uname, info.gname, info.mtime = uid, gid, "", "", EPOCH
            if info.isreg():
                with open(src, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    data = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return data, compressed.getvalue()


def write_blob(data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


# ------------------------------------------------------------ main
start = time.time()
work = tempfile.mkdtemp(prefix="deadbolt-image-layout.")
try:
    host_arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    arch = None
    extra_packages, host_copies = set(), {}
    for binary in binaries:
        machine = elf_machine(binary)
        if machine != host_arch:
            die("%s is built for %s, the host's packages are %s" % (binary, machine, host_arch))
        arch = machine
        names, interp = needed(binary)
        libs = resolved_libraries(binary)
        say("%s needs %s (interpreter %s)" % (os.path.basename(binary), ", ".join(names) or "nothing", interp))
        for path in sorted(set(libs.values()) | ({interp} if interp else set())):
            package = owner(path)
            if package:
                extra_packages.add(package.split(":")[0])
            else:
                host_copies[path] = path
    base_set = set(BASE_PACKAGES)
    library_packages = sorted(extra_packages - base_set)
    unpacked, versions = fetch(BASE_PACKAGES + library_packages)

    # Base layer.
    base = Tree()
    for p in BASE_PACKAGES:
        if p != "ca-certificates":
            base.add_dir(unpacked[p])
    etc = os.path.join(work, "etc")
    os.makedirs(etc)
    files = {
        "passwd": "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                  "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        "group": "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
                         "protocols: files\nservices: files\n",
        "os-release": 'PRETTY_NAME="Distroless-like Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                      'VERSION_ID="12"\nID=debian\n',
    }
    for n, text in files.items():
        with open(os.path.join(etc, n), "w") as f:
            f.write(text)
        base.add_file(os.path.join(etc, n), "etc/" + n, mode=0o644)
    certs = []
    for d, _, names in os.walk(os.path.join(unpacked["ca-certificates"], "usr/share/ca-certificates")):
        certs += [os.path.join(d, n) for n in names if n.endswith(".crt")]
    if not certs:
        die("ca-certificates has no certificates")
    bundle = os.path.join(work, "ca-certificates.crt")
    with open(bundle, "w") as f:
        for c in sorted(certs, key=lambda p: os.path.relpath(p, unpacked["ca-certificates"])):
            f.write(open(c).read().rstrip("\n") + "\n")
    base.add_file(bundle, "etc/ssl/certs/ca-certificates.crt", mode=0o644)
    base.add_empty_dir("tmp", mode=0o1777)
    base.add_empty_dir("home/nonroot", uid=65532, gid=65532, mode=0o700)
    base.add_empty_dir("root", mode=0o700)

    # Library layer: packages beyond the base, and host files no package owns.
    libraries = Tree()
    for p in library_packages:
        libraries.add_dir(unpacked[p])
    for path in sorted(host_copies):
        say("warning: no Debian package owns %s; copying it from the host" % path)
        libraries.add_file(os.path.realpath(path), path)

    # Application layer.
    app = Tree()
    entrypoint = None
    for binary in binaries:
        dest = "/usr/local/bin/" + os.path.basename(binary)
        app.add_file(binary, dest, mode=0o755)
        entrypoint = entrypoint or dest

    if os.path.exists(out):
        if os.listdir(out) and not os.path.exists(os.path.join(out, "oci-layout")):
            die("%s exists and is not an OCI image layout; not overwriting it" % out)
        for n in ("oci-layout", "index.json", "blobs"):
            p = os.path.join(out, n)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    os.makedirs(os.path.join(out, "blobs", "sha256"))

    descriptors, diff_ids, history, summary = [], [], [], []
    for label, tree, what in (("base", base, "libc6 libgcc-s1 netbase tzdata, CA bundle, users"),
                              ("libraries", libraries, " ".join(library_packages) or "host copies"),
                              ("binaries", app, " ".join(os.path.basename(b) for b in binaries))):
        if not tree.entries:
            continue
        data, compressed = layer(tree)
        digest = write_blob(compressed)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest, "size": len(compressed)})
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        history.append({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH)),
                        "created_by": "scripts/image-layout.sh: " + label + " (" + what + ")"})
        summary.append("%-9s %s %6.1f MB (%s)" % (label, digest[:19], len(compressed) / 1e6, what))

    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH)),
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": "65532:65532",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "Entrypoint": [entrypoint],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {"8443/tcp": {}, "9443/tcp": {}, "9090/tcp": {}},
            "Labels": {
                "org.opencontainers.image.title": "deadbolt",
                "org.opencontainers.image.source": "https://github.com/deadbolt-dev/deadbolt",
                "org.opencontainers.image.licenses": "Apache-2.0",
                "org.opencontainers.image.base.name": "debian:bookworm packages (" + ", ".join(
                    "%s %s" % (p, versions[p]) for p in BASE_PACKAGES) + ")",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = write_blob(config_data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_data)},
        "layers": descriptors,
    }
    manifest_data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = write_blob(manifest_data)
    last = name.rsplit("/", 1)[-1]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest_data),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": last.split(":", 1)[1] if ":" in last else "latest"},
        }],
    }
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(out, "index.json"), "w") as f:
        f.write(json.dumps(index, sort_keys=True, separators=(",", ":")))

    if archive:
        docker = [{"Config": "blobs/sha256/" + config_digest[7:], "RepoTags": [name],
                   "Layers": ["blobs/sha256/" + d["digest"][7:] for d in descriptors]}]
        entries = [("oci-layout", None), ("index.json", None), ("blobs", "dir"), ("blobs/sha256", "dir")]
        entries += [("blobs/sha256/" + n, None) for n in sorted(os.listdir(os.path.join(out, "blobs", "sha256")))]
        tmp = archive + ".tmp"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for rel, kind in entries:
                info = tarfile.TarInfo(rel)
                info.mtime, info.uid, info.gid = EPOCH, 0, 0
                if kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    info.size, info.mode = os.path.getsize(os.path.join(out, rel)), 0o644
                    with open(os.path.join(out, rel), "rb") as f:
                        tar.addfile(info, f)
            data = json.dumps(docker, separators=(",", ":")).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
            tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, archive)

    for line in summary:
        say(line)
    say("%s %s: %d layers, entrypoint %s, user 65532, %.1fs" % (
        name, manifest_digest, len(descriptors), entrypoint, time.time() - start))
    if archive:
        say("archive: %s (%.1f MB)" % (archive, os.path.getsize(archive) / 1e6))
    print(manifest_digest)
finally:
    shutil.rmtree(work, ignore_errors=True)
PY
