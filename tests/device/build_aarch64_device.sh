#!/usr/bin/env bash
# Build an emulated aarch64 "device" for edgeact's device tests: a Debian bookworm arm64
# root filesystem with python3, numpy<2, tflite-runtime 2.14 and openssh-server, run on
# this x86-64 host through qemu-user-static and binfmt_misc. device.sh starts its sshd.
#
#   sudo tests/device/build_aarch64_device.sh                 # build (idempotent, ~10-15 min)
#   tests/device/build_aarch64_device.sh --print-rootfs       # print the rootfs path, do nothing
#   sudo tests/device/build_aarch64_device.sh --host-only     # host packages + binfmt only
#   sudo tests/device/build_aarch64_device.sh --force         # rebuild even if complete
#
# The rootfs goes to ${EDGEACT_DEVICE_CACHE:-$HOME/.cache/edgeact-device}/rootfs-<hash>,
# <hash> = first 12 hex chars of sha256(this script), so editing this script rebuilds.
# It is built in rootfs-<hash>.tmp and renamed when complete; the marker file
# /.edgeact-device-complete inside it says the build finished and passed its checks.
#
# Environment:
#   EDGEACT_DEVICE_CACHE   cache folder (default $HOME/.cache/edgeact-device)
#   EDGEACT_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   EDGEACT_HOST_PYTHON    host python with tensorflow, used to make the check model
#                          (default: <repo>/.venv/bin/python)
#   EDGEACT_DEVICE_SKIP_MODEL_CHECK=1  skip the .tflite run check (imports are still checked)
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
SCRIPT_DIR="$(dirname "$SCRIPT_PATH")"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

SUITE=bookworm
ARCH=arm64
MIRROR="${EDGEACT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${EDGEACT_DEVICE_CACHE:-$HOME/.cache/edgeact-device}"
HASH="$(sha256sum "$SCRIPT_PATH" | cut -c1-12)"
ROOTFS="$CACHE/rootfs-$HASH"
TMP_ROOTFS="$ROOTFS.tmp"
MARKER_NAME=".edgeact-device-complete"
# Debian packages in the device. minbase keeps it small; openssh-server pulls its own deps.
INCLUDE="python3,python3-pip,python3-venv,openssh-server,ca-certificates,procps"
# ai-edge-litert 2.2/2.3 crash under bookworm's qemu 7.2; tflite-runtime 2.14 with numpy<2 runs.
PIP_PACKAGES=("numpy==1.26.4" "tflite-runtime==2.14.0")
HOST_PACKAGES=(debootstrap qemu-user-static binfmt-support openssh-client)
CHROOT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
            HOME=/root LANG=C.UTF-8 TERM=dumb)

START_TIME=$(date +%s)
log() { printf '[build-device %4ss] %s\n' "$(( $(date +%s) - START_TIME ))" "$*"; }
die() { printf '[build-device] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments
MODE=build
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --print-rootfs) MODE=print ;;
        --host-only) MODE=host ;;
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,21p' "$SCRIPT_PATH"; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done
if [[ "$MODE" == print ]]; then
    echo "$ROOTFS"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "must run as root (debootstrap, chroot, mount and binfmt_misc need it)"
[[ "$(uname -m)" == x86_64 ]] || die "expected an x86_64 host, got $(uname -m)"
[[ "$CACHE" != *[[:space:]]* ]] || die "cache path must not contain whitespace: $CACHE"
case "$CACHE/" in
    "$REPO_ROOT"/*) die "cache folder must be outside the checkout: $CACHE" ;;
esac

# ---------------------------------------------------------------- helpers
# Unmount everything mounted at or below $1 (deepest first).
umount_below() {
    local dir="$1" m
    for m in $(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
}

mount_pseudo() {  # proc, sys (read-only), /dev and /dev/pts inside a rootfs
    local root="$1"
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    # tflite_runtime's XNNPACK (cpuinfo) reads /sys/devices/system/cpu/{possible,present}.
    mountpoint -q "$root/sys" || mount -t sysfs -o ro sysfs "$root/sys"
    mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
    mountpoint -q "$root/dev/pts" || mount --bind /dev/pts "$root/dev/pts"
}

in_chroot() {  # run a command in the rootfs being built, clean environment
    chroot "$TMP_ROOTFS" "${CHROOT_ENV[@]}" "$@"
}

# ---------------------------------------------------------------- host packages
ensure_host_packages() {
    local missing=() p
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if (( ${#missing[@]} )); then
        log "installing host packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed"
    else
        log "host packages present: ${HOST_PACKAGES[*]}"
    fi
    [[ -x /usr/bin/qemu-aarch64-static ]] || die "/usr/bin/qemu-aarch64-static missing after install"
}

# ---------------------------------------------------------------- binfmt_misc
BINFMT=/proc/sys/fs/binfmt_misc
binfmt_ok() {
    [[ -r "$BINFMT/qemu-aarch64" ]] || return 1
    grep -qx enabled "$BINFMT/qemu-aarch64" || return 1
    # F (fix-binary): the kernel opens qemu at registration, so it also works in a chroot
    # that has no qemu binary of its own.
    grep -Eq '^flags: .*F' "$BINFMT/qemu-aarch64" || return 1
    local interp
    interp="$(awk '/^interpreter/ { print $2 }' "$BINFMT/qemu-aarch64")"
    [[ -e "$interp" ]]
}

ensure_binfmt() {
    if ! mountpoint -q "$BINFMT"; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
    fi
    if binfmt_ok; then
        log "binfmt qemu-aarch64 handler ok ($(grep '^flags' "$BINFMT/qemu-aarch64"))"
        return
    fi
    # A handler without the F flag (or with a stale interpreter) has to go first.
    if [[ -e "$BINFMT/qemu-aarch64" ]]; then
        log "removing unusable qemu-aarch64 binfmt handler"
        echo -1 > "$BINFMT/qemu-aarch64" || true
    fi
    log "registering qemu-aarch64 binfmt handler (update-binfmts)"
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    if ! binfmt_ok; then
        [[ -e "$BINFMT/qemu-aarch64" ]] && { echo -1 > "$BINFMT/qemu-aarch64" || true; }
        log "registering qemu-aarch64 binfmt handler by hand (flags F)"
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            > "$BINFMT/register" || die "writing $BINFMT/register failed"
    fi
    binfmt_ok || die "qemu-aarch64 binfmt handler not usable: $(cat "$BINFMT/qemu-aarch64" 2>/dev/null | tr '\n' ' ')"
    log "binfmt qemu-aarch64 handler ok ($(grep '^flags' "$BINFMT/qemu-aarch64"))"
}

# ---------------------------------------------------------------- checks
# Import check, and (unless skipped) a tiny Conv2D+Dense model, float and full-INT8, made on
# the host with TensorFlow, run with tflite_runtime in the device and compared to the host's
# interpreter output. The model files are generated here, never committed; they stay in the
# rootfs at /opt/edgeact-check for later use over ssh.
make_check_models() {
    local out="$1" py="${EDGEACT_HOST_PYTHON:-$REPO_ROOT/.venv/bin/python}"
    [[ -x "$py" ]] || py="$(command -v python3)"
    log "making check models on the host with $py"
    # TensorFlow is chatty: its output goes to $out.log, the last lines show on failure.
    if ! TF_CPP_MIN_LOG_LEVEL=3 "$py" - "$out" > "$out.log" 2>&1 <<'PY'
import sys, pathlib
import numpy as np
import tensorflow as tf

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
keras = tf.keras
keras.utils.set_random_seed(0)
inp = keras.Input((16, 16, 1))
x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
x = keras.layers.MaxPooling2D()(x)
x = keras.layers.Flatten()(x)
x = keras.layers.Dense(10)(x)
model = keras.Model(inp, x)
rng = np.random.default_rng(0)
calib = rng.random((32, 16, 16, 1), dtype=np.float32)
sample = rng.random((1, 16, 16, 1), dtype=np.float32)

conv = tf.lite.TFLiteConverter.from_keras_model(model)
(out / "tiny_float.tflite").write_bytes(conv.convert())
conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = lambda: ([c[None]] for c in calib)
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.int8
conv.inference_output_type = tf.int8
(out / "tiny_int8.tflite").write_bytes(conv.convert())

try:
    from ai_edge_litert.interpreter import Interpreter
    runtime = "ai_edge_litert"
except ImportError:
    Interpreter = tf.lite.Interpreter
    runtime = "tf.lite"

def run(path, x):
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    if d["dtype"] == np.int8:
        s, z = d["quantization"]
        x = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
    it.set_tensor(d["index"], x)
    it.invoke()
    return x, it.get_tensor(o["index"])

for name in ("tiny_float", "tiny_int8"):
    x, y = run(out / f"{name}.tflite", sample)
    np.save(out / f"{name}_input.npy", x)
    np.save(out / f"{name}_expected.npy", y)
(out / "host_runtime.txt").write_text(f"{runtime} {tf.__version__}\n")
print(f"check models written ({runtime}, tensorflow {tf.__version__})")
PY
    then
        tail -n 20 "$out.log" >&2
        return 1
    fi
    log "$(tail -n 1 "$out.log")"
    cat > "$out/run_check.py" <<'PY'
"""Run the check models with tflite_runtime and compare with the host's outputs."""
import pathlib, sys, time
import numpy as np
from tflite_runtime.interpreter import Interpreter

here = pathlib.Path(__file__).resolve().parent
ok = True
for name in ("tiny_float", "tiny_int8"):
    t0 = time.perf_counter()
    it = Interpreter(model_path=str(here / f"{name}.tflite"))
    it.allocate_tensors()
    t1 = time.perf_counter()
    x = np.load(here / f"{name}_input.npy")
    want = np.load(here / f"{name}_expected.npy")
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    t2 = time.perf_counter()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    tol = 1e-4 if got.dtype == np.float32 else 1.0
    good = got.shape == want.shape and diff <= tol
    ok &= good
    print(f"{name}: {'OK' if good else 'MISMATCH'} max|diff|={diff:g} (tol {tol:g}) "
          f"load={1e3 * (t1 - t0):.1f}ms invoke={1e3 * (t2 - t1):.1f}ms")
sys.exit(0 if ok else 1)
PY
}

check_rootfs() {  # $1: rootfs; imports, and the model run unless skipped
    local root="$1"
    local arch
    arch="$(chroot "$root" "${CHROOT_ENV[@]}" uname -m)" || die "cannot run an aarch64 binary in $root"
    [[ "$arch" == aarch64 ]] || die "uname -m in the rootfs says '$arch', expected aarch64"
    log "rootfs runs under emulation: uname -m = $arch"
    chroot "$root" "${CHROOT_ENV[@]}" python3 -c \
        "import numpy, tflite_runtime.interpreter as t, tflite_runtime; print('numpy', numpy.__version__, 'tflite_runtime', tflite_runtime.__version__)" \
        || die "python3 cannot import numpy and tflite_runtime in the rootfs"
    if [[ -f "$root/opt/edgeact-check/run_check.py" ]]; then
        chroot "$root" "${CHROOT_ENV[@]}" python3 /opt/edgeact-check/run_check.py \
            || die "the check model gives different results in the device than on the host"
    fi
}

# ---------------------------------------------------------------- main
ensure_host_packages
ensure_binfmt
[[ "$MODE" == host ]] && { log "host ready"; exit 0; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock -w 3600 9 || die "another build holds $CACHE/.build.lock"

if [[ -f "$ROOTFS/$MARKER_NAME" && "$FORCE" == 0 ]]; then
    log "rootfs up to date: $ROOTFS"
    mount_pseudo "$ROOTFS"; trap 'umount_below "$ROOTFS"' EXIT
    # Do not unmount under a running device: device.sh owns those mounts then.
    if [[ -f "$CACHE/run/device.pid" ]] && kill -0 "$(cat "$CACHE/run/device.pid")" 2>/dev/null; then
        trap - EXIT
    fi
    check_rootfs "$ROOTFS"
    log "done: $ROOTFS"
    exit 0
fi
if [[ -d "$ROOTFS" ]]; then
    [[ -f "$CACHE/run/device.pid" ]] && kill -0 "$(cat "$CACHE/run/device.pid")" 2>/dev/null \
        && die "device is running from $ROOTFS; run tests/device/device.sh stop first"
    umount_below "$ROOTFS"
    rm -rf --one-file-system "$ROOTFS"
fi

trap 'rc=$?; umount_below "$TMP_ROOTFS"; [[ $rc == 0 ]] || echo "[build-device] FAILED (exit $rc); partial build left in $TMP_ROOTFS" >&2' EXIT
if [[ -e "$TMP_ROOTFS" ]]; then
    log "removing stale partial build $TMP_ROOTFS"
    umount_below "$TMP_ROOTFS"
    rm -rf --one-file-system "$TMP_ROOTFS"
fi
mkdir -p "$CACHE/debs" "$TMP_ROOTFS"

# The check models first: a host without TensorFlow fails here, not after the long part.
CHECK_DIR="$CACHE/check-$HASH"
rm -rf "$CHECK_DIR" "$CHECK_DIR.log"
if [[ "${EDGEACT_DEVICE_SKIP_MODEL_CHECK:-0}" == 1 ]]; then
    log "model check skipped (EDGEACT_DEVICE_SKIP_MODEL_CHECK=1)"
else
    make_check_models "$CHECK_DIR" \
        || die "could not make the check models on the host (set EDGEACT_HOST_PYTHON to a python with tensorflow, or EDGEACT_DEVICE_SKIP_MODEL_CHECK=1)"
fi

log "debootstrap $SUITE $ARCH (minbase + $INCLUDE) into $TMP_ROOTFS from $MIRROR"
if ! debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" \
        --cache-dir="$CACHE/debs" "$SUITE" "$TMP_ROOTFS" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1; then
    tail -n 30 "$CACHE/debootstrap.log" >&2
    die "debootstrap failed; full log: $CACHE/debootstrap.log (and $TMP_ROOTFS/debootstrap/debootstrap.log)"
fi
log "debootstrap done"
umount_below "$TMP_ROOTFS"   # debootstrap normally unmounts its own proc/sys; make sure

# Network config for pip: DNS, and the host's CA bundle (the host may sit behind a proxy
# with its own CA, which the Debian bundle in the rootfs does not have).
cp -L /etc/resolv.conf "$TMP_ROOTFS/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$TMP_ROOTFS/etc/ssl/certs/ca-certificates.crt"
cat > "$TMP_ROOTFS/etc/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
disable-pip-version-check = true
EOF

mount_pseudo "$TMP_ROOTFS"
log "pip install ${PIP_PACKAGES[*]} in the rootfs (under emulation)"
in_chroot python3 -m pip install --break-system-packages --root-user-action=ignore \
    --no-cache-dir --only-binary=:all: \
    --progress-bar off -q "${PIP_PACKAGES[@]}" || die "pip install in the rootfs failed"
log "pip install done"

# sshd: fresh host keys, settings for a chroot without PAM/systemd, key-only root login.
log "configuring sshd and regenerating host keys"
rm -f "$TMP_ROOTFS"/etc/ssh/ssh_host_*
in_chroot ssh-keygen -A >/dev/null || die "ssh-keygen -A in the rootfs failed"
ls "$TMP_ROOTFS"/etc/ssh/ssh_host_ed25519_key >/dev/null || die "no ed25519 host key generated"
mkdir -p "$TMP_ROOTFS/etc/ssh/sshd_config.d" "$TMP_ROOTFS/run/sshd" "$TMP_ROOTFS/root/.ssh"
chmod 700 "$TMP_ROOTFS/root/.ssh"
cat > "$TMP_ROOTFS/etc/ssh/sshd_config.d/edgeact-device.conf" <<'EOF'
# edgeact emulated device: chroot'ed sshd without PAM or systemd; key login only.
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
UseDNS no
AcceptEnv LANG LC_*
EOF
echo edgeact-device > "$TMP_ROOTFS/etc/hostname"
# sshd (without PAM) refuses accounts whose password field starts with '!'.
in_chroot usermod -p '*' root || die "usermod in the rootfs failed"

if [[ -d "$CHECK_DIR" ]]; then
    cp -r "$CHECK_DIR" "$TMP_ROOTFS/opt/edgeact-check"
fi
log "checking the rootfs"
check_rootfs "$TMP_ROOTFS"

in_chroot apt-get clean >/dev/null 2>&1 || true
rm -rf "$TMP_ROOTFS"/var/lib/apt/lists/* "$TMP_ROOTFS"/root/.cache
umount_below "$TMP_ROOTFS"
BUILD_SECONDS=$(( $(date +%s) - START_TIME ))
{
    echo "script_hash=$HASH"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$BUILD_SECONDS"
    echo "suite=$SUITE arch=$ARCH include=$INCLUDE"
    echo "pip=${PIP_PACKAGES[*]}"
} > "$TMP_ROOTFS/$MARKER_NAME"
mv -T "$TMP_ROOTFS" "$ROOTFS"
trap - EXIT
log "rootfs complete: $ROOTFS ($(du -sh --one-file-system "$ROOTFS" | cut -f1), built in ${BUILD_SECONDS}s)"
for old in "$CACHE"/rootfs-*; do
    [[ "$old" == "$ROOTFS" || ! -d "$old" ]] && continue
    log "note: older rootfs $old can be removed (rm -rf --one-file-system $old)"
done
