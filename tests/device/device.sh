#!/usr/bin/env bash
# Start, stop or query the emulated aarch64 device built by build_aarch64_device.sh.
#
#   sudo tests/device/device.sh start  [--port N]   # sshd on 127.0.0.1:N (default 2222)
#   sudo tests/device/device.sh stop                # stop sshd + sessions, unmount
#   tests/device/device.sh status                   # host/port/user/key; exit 3 if stopped
#   eval "$(tests/device/device.sh env)"            # EDGEACT_DEVICE_{HOST,PORT,USER,KEY}
#
# The device's own sshd (the aarch64 binary in the rootfs) runs chrooted under qemu-user via
# binfmt_misc. The client key is $CACHE/keys/id_ed25519 (made if missing); its public key is
# root's authorized key in the rootfs. Connect with:
#   ssh -i $CACHE/keys/id_ed25519 -p 2222 -o StrictHostKeyChecking=no \
#       -o UserKnownHostsFile=/dev/null root@127.0.0.1
# Environment: EDGEACT_DEVICE_CACHE (default $HOME/.cache/edgeact-device), as for the build.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
BUILD="$SCRIPT_DIR/build_aarch64_device.sh"
CACHE="${EDGEACT_DEVICE_CACHE:-$HOME/.cache/edgeact-device}"
ROOTFS="$(bash "$BUILD" --print-rootfs)"
RUN_DIR="$CACHE/run"
PIDFILE="$RUN_DIR/device.pid"
STATEFILE="$RUN_DIR/device.env"
LOGFILE="$RUN_DIR/sshd.log"
KEY="$CACHE/keys/id_ed25519"
HOST=127.0.0.1
USER_NAME=root
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
          -o BatchMode=yes -o ConnectTimeout=20)

die() { printf '[device] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[device] %s\n' "$*"; }

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}"; }

CMD="${1:-}"
[[ -n "$CMD" ]] && shift || { usage; exit 2; }
PORT=2222
while (( $# )); do
    case "$1" in
        --port) [[ $# -ge 2 ]] || die "--port needs a value"; PORT="$2"; shift 2 ;;
        --port=*) PORT="${1#--port=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65536 )) || die "bad port: $PORT"

# A running device may use an older rootfs than the current script's hash (the build script
# was edited since start), so stop/status look at every finished rootfs-<hash> in the cache.
# Partial builds (rootfs-<hash>.tmp) are left alone: a build may be using them.
DEVICE_ROOT_RE="^$(printf '%s' "$CACHE" | sed 's/[][\\.*^$(){}?+|]/\\&/g')/rootfs-[0-9a-f]{12}(/|\$)"

is_device_path() { [[ "$1" =~ $DEVICE_ROOT_RE ]]; }

running_pid() {  # print the sshd pid if the device is running
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # The pid must still be a process chrooted into a device rootfs (not a reused pid).
    is_device_path "$(readlink "/proc/$pid/root" 2>/dev/null)" || return 1
    echo "$pid"
}

device_pids() {  # every process whose root directory is a device rootfs (sshd, its sessions)
    local p
    for p in /proc/[0-9]*; do
        is_device_path "$(readlink "$p/root" 2>/dev/null)" && echo "${p#/proc/}"
    done
    return 0
}

device_mounts() {  # mount points inside device rootfs folders, deepest first
    local m
    awk '{ print $2 }' /proc/mounts | sort -r | while read -r m; do
        is_device_path "$m" && echo "$m"
    done
    return 0
}

ssh_cmd() { echo "ssh -i $KEY -p $1 ${SSH_OPTS[*]:0:4} $USER_NAME@$HOST"; }

cmd_status() {
    local pid port
    if pid="$(running_pid)"; then
        port="$(sed -n 's/^PORT=//p' "$STATEFILE" 2>/dev/null)"
        local root
        root="$(readlink "/proc/$pid/root")"
        echo "status:  running (sshd pid $pid)"
        echo "host:    $HOST"
        echo "port:    $port"
        echo "user:    $USER_NAME"
        echo "key:     $KEY"
        echo "rootfs:  $root$([[ "$root" == "$ROOTFS" ]] || echo " (older than the build script: rebuild, then restart)")"
        echo "log:     $LOGFILE"
        echo "connect: $(ssh_cmd "$port")"
        return 0
    fi
    echo "status:  stopped"
    echo "rootfs:  $ROOTFS$([[ -f "$ROOTFS/.edgeact-device-complete" ]] || echo ' (not built)')"
    echo "key:     $KEY"
    return 3
}

cmd_stop() {
    [[ "$(id -u)" == 0 ]] || die "stop must run as root"
    local pids left m i
    pids="$(device_pids | tr '\n' ' ')"
    if [[ -n "${pids// }" ]]; then
        log "stopping device processes: $pids"
        kill -TERM $pids 2>/dev/null || true
        for i in $(seq 50); do
            left="$(device_pids | tr '\n' ' ')"
            [[ -z "${left// }" ]] && break
            sleep 0.2
        done
        left="$(device_pids | tr '\n' ' ')"
        if [[ -n "${left// }" ]]; then
            log "killing leftover device processes: $left"
            kill -KILL $left 2>/dev/null || true
            sleep 0.5
        fi
    fi
    for m in $(device_mounts); do
        log "unmounting $m"
        umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m"
    done
    [[ -z "$(device_pids)" ]] || die "device processes still running: $(device_pids | tr '\n' ' ')"
    [[ -z "$(device_mounts)" ]] || die "device mounts left: $(device_mounts | tr '\n' ' ')"
    rm -f "$PIDFILE" "$STATEFILE"
    log "stopped; no device processes or mounts left"
}

cmd_start() {
    [[ "$(id -u)" == 0 ]] || die "start must run as root (chroot and mount need it)"
    local pid
    if pid="$(running_pid)"; then
        local cur
        cur="$(sed -n 's/^PORT=//p' "$STATEFILE" 2>/dev/null)"
        [[ "$cur" == "$PORT" ]] || die "device already running on port $cur (pid $pid); stop it first"
        log "already running (pid $pid, port $PORT)"
        cmd_status
        return 0
    fi
    [[ -f "$ROOTFS/.edgeact-device-complete" ]] \
        || die "no complete rootfs at $ROOTFS; build it first: sudo $BUILD"
    # After a reboot the binfmt handler is gone; the build script re-registers it quickly.
    if ! grep -qsx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        log "qemu-aarch64 binfmt handler missing; setting up the host"
        bash "$BUILD" --host-only
    fi
    if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
        die "port $PORT on $HOST is already in use"
    fi
    cmd_stop >/dev/null  # clear leftovers of a crashed run (mounts, stray processes)

    mkdir -p "$RUN_DIR" "$(dirname "$KEY")"
    chmod 700 "$(dirname "$KEY")"
    if [[ ! -f "$KEY" ]]; then
        log "generating client key $KEY"
        ssh-keygen -q -t ed25519 -N "" -C "edgeact-device" -f "$KEY"
    fi
    install -d -m 700 "$ROOTFS/root/.ssh"
    install -m 600 "$KEY.pub" "$ROOTFS/root/.ssh/authorized_keys"
    install -d -m 755 "$ROOTFS/run/sshd"

    mount -t proc proc "$ROOTFS/proc"
    mount -t sysfs -o ro sysfs "$ROOTFS/sys"  # XNNPACK's cpuinfo reads /sys/devices/system/cpu
    mount --bind /dev "$ROOTFS/dev"
    mount --bind /dev/pts "$ROOTFS/dev/pts"

    log "starting sshd (aarch64, emulated) on $HOST:$PORT"
    : > "$LOGFILE"
    setsid nohup chroot "$ROOTFS" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        /usr/sbin/sshd -D -e -p "$PORT" -o ListenAddress="$HOST" -o PidFile=none \
        >>"$LOGFILE" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$PIDFILE"
    printf 'PORT=%s\nROOTFS=%s\nKEY=%s\n' "$PORT" "$ROOTFS" "$KEY" > "$STATEFILE"

    # Ready when a key login works (sshd under emulation takes a few seconds).
    local i
    for i in $(seq 90); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$LOGFILE" >&2
            cmd_stop >/dev/null 2>&1 || true
            die "sshd exited during start; log: $LOGFILE"
        fi
        if ssh -i "$KEY" -p "$PORT" "${SSH_OPTS[@]}" "$USER_NAME@$HOST" true 2>/dev/null; then
            log "device up after ${i}s"
            cmd_status
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$LOGFILE" >&2
    cmd_stop >/dev/null 2>&1 || true
    die "no ssh login on $HOST:$PORT within 90s; log: $LOGFILE"
}

cmd_env() {  # shell-sourceable connection settings for tests
    local pid
    pid="$(running_pid)" || { echo "[device] not running" >&2; return 3; }
    echo "EDGEACT_DEVICE_HOST=$HOST"
    echo "EDGEACT_DEVICE_PORT=$(sed -n 's/^PORT=//p' "$STATEFILE")"
    echo "EDGEACT_DEVICE_USER=$USER_NAME"
    echo "EDGEACT_DEVICE_KEY=$KEY"
}

case "$CMD" in
    start) cmd_start ;;
    env) cmd_env ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
