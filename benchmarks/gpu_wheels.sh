#!/usr/bin/env bash
# Fill .whl/ (ignored by git: /.whl/ in .git/info/exclude) with the wheels benchmarks/gpu_check.sh
# needs on the GPU machine and that its image lacks. That machine (an H200 with CuPy for CUDA 13,
# PyTorch, h5py, Pillow, matplotlib, pytest) has Python 3.12 and no network, so the packages for the
# batch runner (dask, distributed) and for executing tutorial 08 (nbclient, ipykernel and their
# needs) travel as cp312 manylinux wheels, named in the device call's `carry`.
#
#   bash benchmarks/gpu_wheels.sh            # run here, in the repository root, where pip reaches PyPI
#
# Versions: those the CPU suite runs with here (the .venv), so the device runs tested code.
# Each wheel is downloaded with --no-deps; the list below is the whole closure of what the image
# lacks. At the end every wheel's Requires-Dist (for Python 3.12 on Linux, extras ignored) is checked
# against the wheels here plus the image's package list (/work/.library/device/KINDS.md, when
# present), so a missing dependency shows up here and not on the device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl

WHEELS=(
  # batch runner: numpynst batch --gpu --scheduler ... (dask-cuda is not used: see gpu_check.sh)
  dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0
  tornado==6.6.1
  # executing tutorial 08: nbclient + an ipykernel kernel
  nbclient==0.11.0 nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  jupyter_client==8.10.0 jupyter_core==5.9.1 platformdirs==4.14.9 pyzmq==27.3.0 traitlets==5.16.1
  ipykernel==7.4.0 comm==0.2.3 debugpy==1.8.22 nest-asyncio2==1.7.4 matplotlib-inline==0.2.2
  ipython==9.18.1 ipython_pygments_lexers==1.1.1 decorator==5.2.1 jedi==0.20.1 parso==0.8.7
  prompt_toolkit==3.0.53 wcwidth==0.9.4 pexpect==4.9.0 ptyprocess==0.7.0 stack-data==0.6.3
  executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4
)

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"

# keep exactly one version of each (two stop the whole install on the device)
"$PY" - "$DEST" "${WHEELS[@]}" <<'EOF'
import re, sys
from pathlib import Path

dest, pins = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
wanted = {norm(p.split("==")[0]): p.split("==")[1] for p in pins}
for whl in sorted(dest.glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    if norm(name) not in wanted or version != wanted[norm(name)]:
        print(f"removing {whl.name} (not in the list)")
        whl.unlink()
EOF

# dependency closure: every requirement is a carried wheel or already on the device image
"$PY" - "$DEST" <<'EOF'
import re, sys, zipfile
from pathlib import Path

from packaging.requirements import Requirement

dest = Path(sys.argv[1])
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
have = {norm(w.name.split("-")[0]) for w in dest.glob("*.whl")}
kinds = Path("/work/.library/device/KINDS.md")
image = set()
if kinds.exists():
    m = re.search(r"Packages: (.*?)\.\s*$", kinds.read_text(), re.M)
    image = {norm(p) for p in m.group(1).split(", ")} if m else set()
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
missing = []
for whl in sorted(dest.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if norm(req.name) not in have and norm(req.name) not in image:
                missing.append(f"{whl.name} needs {req}")
total = sum(w.stat().st_size for w in dest.glob("*.whl"))
print(f"{len(have)} wheels, {total / 2**20:.1f} MiB in {dest}/"
      + ("" if image else " (device package list not found: dependency check covers the wheels only)"))
if missing:
    print("missing on the device:\n  " + "\n  ".join(missing))
    sys.exit(1)
EOF
echo "tracked files: $(git ls-files -z | du -ch --files0-from=- | tail -1 | cut -f1); travel limit 64 MiB in all"
