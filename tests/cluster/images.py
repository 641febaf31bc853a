#!/usr/bin/env python3
"""The project's images as OCI archives, built on this machine from the release binaries; nothing
is pulled. The Containerfile is the one recipe: every stage after the build stage becomes an image
with that stage's name, its `COPY --from=build /out/BIN DEST` files (stripped, as the Containerfile's
`install -s` strips them), its `USER` and its `ENTRYPOINT`. The stage's distroless base is replaced
by a layer made here of what that base gives a program: the glibc libraries the binaries link
(from this Debian 12 machine, distroless cc-debian12's Debian), CA certificates, /etc/passwd and
/etc/group with `nonroot` 65532, and /tmp. An instruction this script does not know fails the build,
so the Containerfile cannot grow a step the test images silently lack.

  images.py build --containerfile F --bin-dir DIR --tag T --out DIR [--arch A] [--no-pause]
      one archive per stage (OUT/<stage>.tar, named <registry>/<stage>:<T> as in the Containerfile's
      header) for architecture A (amd64 or arm64; default this machine's, whose binaries and
      libraries the images carry) and, unless --no-pause, the test node's OUT/pause.tar; prints
      one JSON line per image with its compressed size
  images.py wrapper --base OUT/scanjob.tar --name REF --script FILE --out FILE.tar
      a test image: the base image plus busybox (a shell) and FILE as its entrypoint
  images.py push --archive OUT/<stage>.tar [--archive OTHER/<stage>.tar ...] --ref HOST[:PORT]/REPO:TAG [--plain-http]
      pushes each archive's blobs and manifest to a registry (the OCI distribution API), then an
      image index naming each manifest with its platform under TAG: one image for every
      architecture built (a release pushes amd64 and arm64); credentials from REGISTRY_USER and
      REGISTRY_PASSWORD if set
"""
import argparse
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
import base64
import urllib.error
import urllib.request

REGISTRY = "ghcr.io/scanjob"
PAUSE_REF = "localhost/scanjob/pause:1.0"
NONROOT = 65532
# Go's names (OCI platforms) of the machines the images are built on.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def die(msg):
    print(f"images.py: {msg}", file=sys.stderr)
    sys.exit(1)


# --- the Containerfile, read as the recipe -------------------------------------------------------

def runtime_stages(path):
    """[(name, base, copies [(src, dest)], user, entrypoint)] for each stage but the build stage."""
    lines, cur = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        cur += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    stages, stage = [], None
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest.strip(), re.I)
            if not m:
                die(f"FROM without a stage name: {line}")
            stage = {"name": m.group(2), "base": m.group(1), "copies": [], "user": None, "entrypoint": None}
            stages.append(stage)
        elif stage is None:
            die(f"instruction before FROM: {line}")
        elif stage["name"] == "build":
            continue  # the build stage is cargo's; here the binaries come from the release build
        elif word == "COPY":
            m = re.fullmatch(r"--from=build\s+/out/(\S+)\s+(\S+)", rest.strip())
            if not m:
                die(f"a COPY this script cannot reproduce: {line}")
            stage["copies"].append((m.group(1), m.group(2)))
        elif word == "USER":
            stage["user"] = rest.strip()
        elif word == "ENTRYPOINT":
            stage["entrypoint"] = json.loads(rest)
        else:
            die(f"an instruction this script cannot reproduce: {line}")
    runtime = [s for s in stages if s["name"] != "build"]
    if not runtime:
        die(f"no image stages in {path}")
    for s in runtime:
        if not s["base"].startswith("gcr.io/distroless/cc-debian12"):
            die(f"stage {s['name']}: base {s['base']} is not the distroless cc image this script stands in for")
    return runtime


# --- layers --------------------------------------------------------------------------------------

def _info(name, kind=tarfile.REGTYPE, mode=0o644, uid=0, size=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.size, ti.mtime, ti.linkname = kind, mode, uid, uid, size, 0, link
    return ti


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def dir(self, name, mode=0o755, uid=0):
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        parent = os.path.dirname(name)
        if parent:
            self.dir(parent)
        self.dirs.add(name)
        self.tar.addfile(_info(name, tarfile.DIRTYPE, mode, uid))

    def file(self, name, data, mode=0o644):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self.tar.addfile(_info(name, mode=mode, size=len(data)), io.BytesIO(data))

    def symlink(self, name, target):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self.tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, link=target))

    def blob(self):
        self.tar.close()
        raw = self.buf.getvalue()
        return raw, gzip.compress(raw, compresslevel=6, mtime=0)


def linked_libraries(binaries):
    """The shared objects `ldd` resolves for the binaries, with the symlink each is named by."""
    libs = {}
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = re.search(r"(\S+) => (/\S+)", line) or re.search(r"^\s*(/\S+) \(", line)
            if m:
                path = m.group(m.lastindex)
                libs[path] = os.path.realpath(path)
    return libs


def base_layer(binaries):
    """What distroless cc-debian12:nonroot gives a glibc program, from this machine's Debian."""
    layer = Layer()
    for d in ["bin", "etc", "lib", "lib64", "usr/lib", "usr/local/bin", "var", "proc", "sys", "dev"]:
        layer.dir(d)
    layer.dir("tmp", 0o1777)
    layer.dir("home/nonroot", 0o700, NONROOT)
    for name, real in sorted(linked_libraries(binaries).items()):
        data = open(real, "rb").read()
        if real != name:
            layer.file(real, data, 0o755)
            layer.symlink(name, os.path.basename(real) if os.path.dirname(real) == os.path.dirname(name) else real)
        else:
            layer.file(name, data, 0o755)
    certs = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.isfile(certs):
        die(f"{certs} is missing (Debian package ca-certificates)")
    layer.file(certs, open(certs, "rb").read())
    layer.file("etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n".encode())
    layer.file("etc/group", f"root:x:0:\nnonroot:x:{NONROOT}:\n".encode())
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    return layer.blob()


def elf_arch(path):
    """The OCI architecture of an ELF program, from its header's e_machine."""
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        die(f"{path} is not an ELF program")
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return {0x3E: "amd64", 0xB7: "arm64"}.get(machine, f"e_machine {machine:#x}")


def stripped(path):
    with tempfile.NamedTemporaryFile() as tmp:
        subprocess.run(["strip", "-o", tmp.name, path], check=True)
        return open(tmp.name, "rb").read()


# --- OCI archives --------------------------------------------------------------------------------

def write_archive(out, ref, layers, config, arch):
    """An OCI image layout in a tar (what `ctr images import` reads): layers are (raw, gzipped)."""
    blobs = {}

    def put(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_descs = [dict(put(gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for _, gz in layers]
    cfg = {
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest() for raw, _ in layers]},
        "created": "1970-01-01T00:00:00Z",
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/cluster/images.py"} for _ in layers],
    }
    cfg_desc = dict(put(json.dumps(cfg, separators=(",", ":")).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg_desc, "layers": layer_descs}
    man_desc = dict(put(json.dumps(manifest, separators=(",", ":")).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
    man_desc["platform"] = {"architecture": arch, "os": "linux"}
    man_desc["annotations"] = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [man_desc]}
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w") as t:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode())]:
            t.addfile(_info(name, size=len(data)), io.BytesIO(data))
        t.addfile(_info("blobs", tarfile.DIRTYPE, 0o755))
        t.addfile(_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for digest, data in blobs.items():
            t.addfile(_info("blobs/sha256/" + digest.split(":")[1], size=len(data)), io.BytesIO(data))
    os.replace(tmp, out)
    return sum(len(gz) for _, gz in layers) + cfg_desc["size"]


def read_archive(path):
    """(layers [(raw, gz)], config, arch) of an archive written by write_archive."""
    with tarfile.open(path) as t:
        blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
        index = json.loads(t.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layers = []
        for desc in manifest["layers"]:
            gz = blob(desc["digest"])
            layers.append((gzip.decompress(gz), gz))
        return layers, config["config"], config["architecture"]


def build(args):
    stages = runtime_stages(args.containerfile)
    os.makedirs(args.out, exist_ok=True)
    binaries = {src: os.path.join(args.bin_dir, src) for s in stages for src, _ in s["copies"]}
    for src, path in binaries.items():
        if not os.access(path, os.X_OK):
            die(f"{path} is missing: build it with `cargo build --release --bin {src}`")
        if elf_arch(path) != args.arch:
            die(f"{path} is an {elf_arch(path)} program, not {args.arch}")
    base = base_layer(binaries.values())
    for s in stages:
        app = Layer()
        for src, dest in s["copies"]:
            app.file(dest, stripped(binaries[src]), 0o755)
        ref = f"{REGISTRY}/{s['name']}:{args.tag}"
        user = s["user"] or "0"
        size = write_archive(os.path.join(args.out, s["name"] + ".tar"), ref, [base, app.blob()],
                             {"User": user, "Entrypoint": s["entrypoint"], "WorkingDir": "/",
                              "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]},
                             args.arch)
        print(json.dumps({"image": ref, "archive": os.path.join(args.out, s["name"] + ".tar"), "compressed_bytes": size,
                          "arch": args.arch, "user": user, "entrypoint": s["entrypoint"],
                          "files": [d for _, d in s["copies"]]}))
    if args.no_pause:
        return
    pause = Layer()
    pause.file("pause", open(shutil.which("catatonit") or die("catatonit is missing"), "rb").read(), 0o755)
    write_archive(os.path.join(args.out, "pause.tar"), PAUSE_REF, [pause.blob()],
                  {"Entrypoint": ["/pause", "-P"], "User": "65535:65535", "WorkingDir": "/"}, args.arch)


BUSYBOX_APPLETS = ["sh", "sleep", "echo", "cat", "kill", "id", "touch", "test", "true", "false", "ls", "dd", "env", "head", "tr"]


def wrapper(args):
    layers, config, arch = read_archive(args.base)
    extra = Layer()
    extra.file("bin/busybox", open("/bin/busybox", "rb").read(), 0o755)
    for applet in BUSYBOX_APPLETS:
        extra.symlink("bin/" + applet, "busybox")
    extra.file("usr/local/bin/wrapper", open(args.script, "rb").read(), 0o755)
    config = dict(config, Entrypoint=["/usr/local/bin/wrapper"])
    write_archive(args.out, args.name, layers + [extra.blob()], config, arch)


def push(args):
    """Blobs first (each skipped if the registry has it), each manifest by its digest, then the index
    of them under the tag."""
    m = re.fullmatch(r"([^/]+)/(.+):([^:/]+)", args.ref)
    if not m:
        die(f"--ref {args.ref} is not HOST[:PORT]/REPOSITORY:TAG")
    host, repo, tag = m.groups()
    base = f"{'http' if args.plain_http else 'https'}://{host}/v2/{repo}"
    headers = {}
    if os.environ.get("REGISTRY_USER"):
        token = base64.b64encode(f"{os.environ['REGISTRY_USER']}:{os.environ.get('REGISTRY_PASSWORD', '')}".encode())
        headers["Authorization"] = "Basic " + token.decode()

    def call(method, url, data=None, content_type=None):
        h = dict(headers)
        if content_type:
            h["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            if method == "HEAD" and e.code == 404:
                return 404, e.headers
            die(f"{method} {url}: {e.code} {e.read()[:300]!r}")
        except urllib.error.URLError as e:
            die(f"{method} {url}: {e.reason}")

    def put_blob(digest, data):
        if call("HEAD", f"{base}/blobs/{digest}")[0] == 200:
            return 0
        _, h = call("POST", f"{base}/blobs/uploads/", b"")
        location = h["Location"]
        if location.startswith("/"):
            location = f"{'http' if args.plain_http else 'https'}://{host}{location}"
        sep = "&" if "?" in location else "?"
        call("PUT", f"{location}{sep}digest={digest}", data, "application/octet-stream")
        return len(data)

    platforms, pushed = [], 0
    for archive in args.archive:
        with tarfile.open(archive) as t:
            blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
            desc = json.loads(t.extractfile("index.json").read())["manifests"][0]
            manifest_bytes = blob(desc["digest"])
            manifest = json.loads(manifest_bytes)
            for d in [manifest["config"]] + manifest["layers"]:
                pushed += put_blob(d["digest"], blob(d["digest"]))
            call("PUT", f"{base}/manifests/{desc['digest']}", manifest_bytes, manifest["mediaType"])
            platform = desc["platform"]
            if any(p["platform"] == platform for p in platforms):
                die(f"{archive}: a second image for {platform}")
            platforms.append({"mediaType": manifest["mediaType"], "digest": desc["digest"],
                              "size": desc["size"], "platform": platform})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platforms}
    index_bytes = json.dumps(index, separators=(",", ":")).encode()
    call("PUT", f"{base}/manifests/{tag}", index_bytes, index["mediaType"])
    digest = "sha256:" + hashlib.sha256(index_bytes).hexdigest()
    print(json.dumps({"pushed": args.ref, "digest": digest,
                      "platforms": [p["platform"]["architecture"] for p in platforms], "new_blob_bytes": pushed}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--containerfile", required=True)
    b.add_argument("--bin-dir", required=True)
    b.add_argument("--tag", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--arch", choices=sorted(ARCHES.values()), default=ARCHES.get(os.uname().machine, os.uname().machine))
    b.add_argument("--no-pause", action="store_true")
    w = sub.add_parser("wrapper")
    w.add_argument("--base", required=True)
    w.add_argument("--name", required=True)
    w.add_argument("--script", required=True)
    w.add_argument("--out", required=True)
    u = sub.add_parser("push")
    u.add_argument("--archive", required=True, action="append")
    u.add_argument("--ref", required=True)
    u.add_argument("--plain-http", action="store_true")
    args = p.parse_args()
    {"build": build, "wrapper": wrapper, "push": push}[args.cmd](args)


if __name__ == "__main__":
    main()
