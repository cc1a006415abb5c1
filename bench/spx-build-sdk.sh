#!/usr/bin/env bash
# bench/spx-build-sdk.sh [SIZE_MB] — how fast `spxpack build` packages a large image, next to
# the alternatives it replaces, in the same run:
#   1. spxpack build (default: quick re-check of the written SPX)
#   2. spxpack build --verify off
#   3. spxpack pull -o IMAGE.tar.gz, then the SDK script's packing step (Python tarfile "w:gz",
#      level 9, which recompresses the already-compressed archive)
#   4. the same archive packed with `tar czf` (gzip -6), the docs' manual recipe
# The image: an OCI layout with two gzip layers of random data (SIZE_MB each, default 300), built
# once under $BENCH_DIR (default /tmp/spxpack-bench). Needs python3, gzip, GNU tar.
set -euo pipefail
size=${1:-300}
bin=${SPXPACK:-target/release/spxpack}
dir=${BENCH_DIR:-/tmp/spxpack-bench}
mkdir -p "$dir"
layout=$dir/layout-$size
if [[ ! -f $layout/index.json ]]; then
    echo "==> generating a ${size} MB x 2 layer OCI layout in $layout"
    python3 - "$layout" "$size" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, size = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return d, len(b)
layers, diffs = [], []
for i in range(2):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        data = os.urandom(size << 20)
        ti = tarfile.TarInfo(f"data{i}.bin"); ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
    layers.append(put(gzip.compress(raw, compresslevel=1, mtime=0)))
cfg = json.dumps({"architecture": "arm64", "variant": "v8", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
cd, cs = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + d, "size": s}
               for d, s in layers]}).encode()
md, ms = put(man)
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:" + md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "big"}}]},
    open(f"{out}/index.json", "w"))
PY
fi
ext=$dir/ext
rm -rf "$ext" && mkdir -p "$ext"
cat > "$ext/manifest.json" <<JSON
{"extension_name": "bench", "version": "1.0.0", "images": ["bench.tar.gz"]}
JSON
cat > "$ext/docker-compose.yml" <<YAML
services:
  app:
    image: bench:1
    x-spxpack:
      source: "oci:$layout:big"
YAML
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; python3 -c "print(f'{$(date +%s.%N)-$s:.2f}')"; }
cache=$dir/cache
echo "==> $(nproc) cores; image: 2 x ${size} MB gzip layers"
echo "spxpack build (quick verify):   $(t "$bin" build "$ext" -o "$dir/a.spx" --cache-dir "$cache") s"
echo "spxpack build --verify off:     $(t "$bin" build "$ext" -o "$dir/b.spx" --verify off --cache-dir "$cache") s"
echo "spxpack build --verify full:    $(t "$bin" build "$ext" -o "$dir/c.spx" --verify full --cache-dir "$cache") s"
echo "spxpack pull -o archive:        $(t "$bin" pull "oci:$layout:big" -o "$dir/bench.tar.gz" --cache-dir "$cache") s"
cp "$ext/manifest.json" "$ext/docker-compose.yml" "$dir/"
echo "  + Python tarfile w:gz (SDK):  $(t python3 -c "
import tarfile
with tarfile.open('$dir/sdk.spx', 'w:gz') as t:
    for n in ['manifest.json', 'bench.tar.gz', 'docker-compose.yml']: t.add('$dir/' + n, n)") s"
echo "  + tar czf (manual recipe):    $(t tar -C "$dir" -czf "$dir/manual.spx" manifest.json bench.tar.gz docker-compose.yml) s"
ls -l "$dir"/*.spx | awk '{print $5, $9}'
cmp "$dir/a.spx" "$dir/b.spx" && echo "a.spx and b.spx are identical"
