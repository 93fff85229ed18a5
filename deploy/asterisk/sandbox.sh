#!/usr/bin/env bash
# 村响 (cunxiang) — Asterisk 22 sandbox: a Debian sid chroot that shares the
# host's loopback, provisioned once per machine and shared by any number of
# Asterisk *instances* (one directory each inside the root).
#
#   sandbox.sh provision [--force]   build (or reuse) the sid root; prints its path
#   sandbox.sh root                  print the provisioned root path (exit 1 if none)
#   sandbox.sh start  INSTANCE_DIR   start one instance (no-op if running)
#   sandbox.sh stop   INSTANCE_DIR   stop it (no-op if stopped); unmount proc if last
#   sandbox.sh status INSTANCE_DIR   "running pid N" (exit 0) or "stopped" (exit 3)
#   sandbox.sh rx     INSTANCE_DIR 'CLI COMMAND'
#
# INSTANCE_DIR is a host path under the root, e.g. "$ROOT/srv/cunxiang/main";
# its etc/ must already hold the rendered configuration (templates/ beside
# this script). See SANDBOX.md.
#
# Environment:
#   CUNXIANG_ASTERISK_CACHE          cache dir (default /var/cache/cunxiang)
#   CUNXIANG_ASTERISK_BOOT_TIMEOUT   seconds to wait for "fully booted" (default 60)
#   CUNXIANG_ASTERISK_STOP_TIMEOUT   seconds to wait for a clean stop (default 20)
#
# stdout carries results only (root path, CLI output, status); logs go to stderr.
set -euo pipefail

# Bump when the layout of the root or the way it is built changes: a new
# value gives a new cache key, hence a fresh root beside the old one.
readonly FORMAT_VERSION=2
readonly SUITE=sid
readonly PACKAGES=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm
readonly MARKER=.cunxiang-provisioned

CACHE_DIR=${CUNXIANG_ASTERISK_CACHE:-/var/cache/cunxiang}
BOOT_TIMEOUT=${CUNXIANG_ASTERISK_BOOT_TIMEOUT:-60}
STOP_TIMEOUT=${CUNXIANG_ASTERISK_STOP_TIMEOUT:-20}
PROG=${0##*/}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $PROG provision [--force]
       $PROG root
       $PROG start  INSTANCE_DIR
       $PROG stop   INSTANCE_DIR
       $PROG status INSTANCE_DIR
       $PROG rx     INSTANCE_DIR 'CLI COMMAND'
EOF
    exit 2
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and mount need it)"
}

# ---------------------------------------------------------------- cache key

arch() {
    if command -v dpkg >/dev/null 2>&1; then dpkg --print-architecture; else uname -m; fi
}

cache_key() {
    printf 'format=%s\nsuite=%s\npackages=%s\narch=%s\n' \
        "$FORMAT_VERSION" "$SUITE" "$PACKAGES" "$(arch)" | sha256sum | cut -c1-12
}

ROOT_PATH="$CACHE_DIR/asterisk-$SUITE-$(cache_key)"

# The Debian mirror this machine's own apt already uses (never hard-coded).
mirror() {
    local m=""
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        m=$(awk 'tolower($1) == "uris:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $m && -r /etc/apt/sources.list ]]; then
        # first "deb" line; skip an optional [options] block
        m=$(awk '$1 == "deb" { sub(/^deb[ \t]+/, ""); sub(/^\[[^]]*\][ \t]*/, ""); split($0, f); print f[1]; exit }' \
            /etc/apt/sources.list)
    fi
    [[ -n $m ]] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    printf '%s\n' "$m"
}

# ------------------------------------------------------------------ mounts

# Mount points at or below $1, deepest first (from /proc/self/mountinfo,
# where a space in a path is written as \040).
mounts_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '{ p = $5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print length(p) "\t" p }' \
        /proc/self/mountinfo | sort -rn | cut -f2-
}

# Remove a directory tree that may still carry mounts (a debootstrap killed
# half way leaves proc/sys mounted inside its target). Never descends into a
# mounted file system.
safe_rm_tree() {
    local dir=$1 m
    [[ -e $dir ]] || return 0
    while IFS= read -r m; do
        [[ -n $m ]] || continue
        log "unmounting leftover $m"
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(mounts_under "$dir")
    if [[ -n $(mounts_under "$dir") ]]; then
        die "refusing to remove $dir: still has mounts: $(mounts_under "$dir" | tr '\n' ' ')"
    fi
    rm -rf --one-file-system -- "$dir"
}

# -------------------------------------------------------------- provision

# Debian's asterisk package creates its system user with the first free
# system uid/gid *of the chroot* (101 on a fresh minbase). On the host that
# number usually belongs to someone else (postgres on our machines), who
# would then own the instances' files: AMI secrets, petition recordings.
# Move the chroot's asterisk user and group to one number that is free both
# on the host and in the chroot, from the middle of the dynamic system range
# (adduser allocates upwards from 100, systemd-sysusers downwards from 999).
host_id_taken() { # DB NUMBER
    getent "$1" "$2" >/dev/null 2>&1
}

renumber_asterisk_ids() { # ROOTDIR
    local r=$1 old_uid old_gid n
    old_uid=$(awk -F: '$1 == "asterisk" { print $3 }' "$r/etc/passwd")
    old_gid=$(awk -F: '$1 == "asterisk" { print $3 }' "$r/etc/group")
    [[ -n $old_uid && -n $old_gid ]] || die "no asterisk user/group in $r"
    if [[ $old_uid == "$old_gid" ]] && ! host_id_taken passwd "$old_uid" && ! host_id_taken group "$old_gid"; then
        return 0
    fi
    for ((n = 400; n < 1000; n++)); do
        host_id_taken passwd "$n" && continue
        host_id_taken group "$n" && continue
        awk -F: -v n="$n" '$3 == n { found = 1 } END { exit !found }' "$r/etc/passwd" "$r/etc/group" && continue
        break
    done
    ((n < 1000)) || die "no uid/gid in 400..999 free on the host and in the chroot"
    log "asterisk uid/gid $old_uid/$old_gid of the chroot is taken on the host; renumbering to $n/$n"
    chroot "$r" groupmod -g "$n" asterisk
    chroot "$r" usermod -u "$n" -g "$n" asterisk
    find "$r" -xdev -uid "$old_uid" -exec chown -h "$n" {} +
    find "$r" -xdev -gid "$old_gid" -exec chgrp -h "$n" {} +
}

provisioned_root() {
    [[ -f $ROOT_PATH/$MARKER ]] && [[ -x $ROOT_PATH/usr/sbin/asterisk ]]
}

cmd_root() {
    if provisioned_root; then
        printf '%s\n' "$ROOT_PATH"
    else
        log "the Asterisk sandbox is not provisioned (expected $ROOT_PATH); run: $0 provision"
        exit 1
    fi
}

cmd_provision() {
    local force=0
    while [[ $# -gt 0 ]]; do
        case $1 in
            --force) force=1 ;;
            *) usage ;;
        esac
        shift
    done
    need_root
    mkdir -p "$CACHE_DIR"

    local lock_fd
    exec {lock_fd}>"$CACHE_DIR/.provision.lock"
    if ! flock -n "$lock_fd"; then
        log "another provision holds $CACHE_DIR/.provision.lock; waiting"
        flock "$lock_fd"
    fi

    if provisioned_root && [[ $force -eq 0 ]]; then
        log "reusing $ROOT_PATH ($(cat "$ROOT_PATH/$MARKER"))"
        printf '%s\n' "$ROOT_PATH"
        return 0
    fi
    if [[ $force -eq 1 && -e $ROOT_PATH ]] && running_in_root; then
        die "refusing --force: processes still run inside $ROOT_PATH (stop its instances first)"
    fi

    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2; }
    fi

    local tmp="$ROOT_PATH.tmp" m started
    PROVISION_TMP=$tmp
    safe_rm_tree "$tmp" # a previous half-built attempt
    m=$(mirror)
    log "debootstrap $SUITE from $m into $tmp (packages: $PACKAGES)"
    started=$(date +%s)
    # on failure: leave nothing half-built behind
    trap 'safe_rm_tree "$PROVISION_TMP"' EXIT
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$m" >&2
    # debootstrap unmounts what it mounted; make sure before renaming
    [[ -z $(mounts_under "$tmp") ]] || die "mounts left inside $tmp after debootstrap"

    local version
    # shellcheck disable=SC2016 # ${Version} is a dpkg-query field, not a shell expansion
    version=$(chroot "$tmp" dpkg-query -W -f='${Version}' asterisk)
    [[ -n $version ]] || die "asterisk is not installed in $tmp"
    [[ -x $tmp/usr/sbin/asterisk ]] || die "$tmp/usr/sbin/asterisk missing"
    renumber_asterisk_ids "$tmp"
    # where instances live by convention
    mkdir -p "$tmp/srv/cunxiang"
    printf 'asterisk %s\n' "$version" >"$tmp/$MARKER"

    if [[ -e $ROOT_PATH ]]; then
        local old="$ROOT_PATH.old.$$"
        mv -T -- "$ROOT_PATH" "$old"
        mv -T -- "$tmp" "$ROOT_PATH"
        safe_rm_tree "$old"
    else
        mv -T -- "$tmp" "$ROOT_PATH"
    fi
    trap - EXIT
    log "provisioned $ROOT_PATH: asterisk $version in $(($(date +%s) - started)) s, $(du -sh "$ROOT_PATH" | cut -f1)"
    printf '%s\n' "$ROOT_PATH"
}

# --------------------------------------------------------------- instances

# Sets INST (host path), INNER (path inside the chroot), ROOT.
resolve_instance() {
    [[ $# -ge 1 && -n $1 ]] || usage
    provisioned_root || die "the Asterisk sandbox is not provisioned (expected $ROOT_PATH); run: $0 provision"
    ROOT=$ROOT_PATH
    INST=$(realpath -m -- "$1")
    case $INST in
        "$ROOT"/?*) ;;
        *) die "instance dir $INST is not under the sandbox root $ROOT" ;;
    esac
    INNER=${INST#"$ROOT"}
    case $INNER in
        /proc | /proc/* | /dev | /dev/* | /sys | /sys/*) die "instance dir $INST is inside a system dir of the root" ;;
    esac
    PIDFILE=$INST/run/sandbox.pid
}

# The run lock serialises "is proc mounted / is anyone running / start /
# unmount" across all instances of one root.
take_run_lock() {
    mkdir -p "$CACHE_DIR"
    exec {RUN_LOCK_FD}>"$ROOT_PATH.run.lock"
    flock -w 120 "$RUN_LOCK_FD" || die "could not take $ROOT_PATH.run.lock within 120 s"
}

# Does any process run with its root directory inside our chroot?
running_in_root() {
    local p link
    for p in /proc/[0-9]*; do
        link=$(readlink "$p/root" 2>/dev/null) || continue
        if [[ $link == "$ROOT_PATH" || $link == "$ROOT_PATH"/* ]]; then
            return 0
        fi
    done
    return 1
}

# A zombie (exited, not yet reaped by whoever adopted it) counts as dead.
pid_alive() { # PID
    kill -0 "$1" 2>/dev/null || return 1
    [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# pid of the instance's live Asterisk, or nothing. A pid file whose process
# is gone, or is no longer our Asterisk (pid reuse), does not count.
instance_pid() {
    local pid cmdline
    [[ -f $PIDFILE ]] || return 1
    pid=$(tr -dc '0-9' <"$PIDFILE")
    [[ -n $pid ]] || return 1
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *asterisk*"$INNER/etc/asterisk.conf"* ]] || return 1
    printf '%s\n' "$pid"
}

asterisk_rx() { # COMMAND [timeout seconds]
    timeout "${2:-15}" chroot "$ROOT" /usr/sbin/asterisk -C "$INNER/etc/asterisk.conf" -rx "$1"
}

mount_proc() {
    if ! mountpoint -q "$ROOT/proc"; then
        mount -t proc proc "$ROOT/proc"
    fi
}

# Unmount proc when no process runs inside the root any more. Caller holds
# the run lock.
umount_proc_if_idle() {
    if mountpoint -q "$ROOT/proc"; then
        if running_in_root; then
            log "other processes still run in $ROOT; leaving $ROOT/proc mounted"
        else
            umount "$ROOT/proc" || umount -l "$ROOT/proc"
            log "unmounted $ROOT/proc"
        fi
    fi
}

asterisk_ids() { # prints "uid gid" of the chroot's asterisk user/group
    local uid gid
    uid=$(awk -F: '$1 == "asterisk" { print $3 }' "$ROOT/etc/passwd")
    gid=$(awk -F: '$1 == "asterisk" { print $3 }' "$ROOT/etc/group")
    [[ -n $uid && -n $gid ]] || die "no asterisk user/group in $ROOT/etc/passwd, $ROOT/etc/group"
    printf '%s %s\n' "$uid" "$gid"
}

tail_output() {
    local f
    for f in "$INST/log/asterisk.out" "$INST/log/messages.log"; do
        if [[ -s $f ]]; then
            log "---- last lines of $f ----"
            tail -n 30 "$f" >&2
        fi
    done
}

# SIGTERM, then SIGKILL, the process group led by PID (setsid made it a
# group leader); returns once PID is gone or fails after ~10 s.
kill_group() { # PID
    local pid=$1 sig deadline
    for sig in TERM KILL; do
        pid_alive "$pid" || return 0
        kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    done
    ! pid_alive "$pid"
}

# A start that failed: clean up and leave proc as we would on a stop.
start_failed() { # PID MESSAGE
    kill_group "$1" || true
    rm -f "$PIDFILE"
    flock -w 120 "$RUN_LOCK_FD" || true
    umount_proc_if_idle
    die "$2"
}

# Poll until the instance answers "fully booted", with a deadline. Caller
# has released the run lock (but still has its fd open).
wait_booted() { # PID
    local pid=$1
    local deadline=$((SECONDS + BOOT_TIMEOUT)) left
    while :; do
        if ! pid_alive "$pid"; then
            tail_output
            start_failed "$pid" "Asterisk for $INST exited during start (output above, in $INST/log/)"
        fi
        left=$((deadline - SECONDS))
        if ((left <= 0)); then
            tail_output
            log "Asterisk for $INST not fully booted after $BOOT_TIMEOUT s; stopping it"
            start_failed "$pid" "Asterisk for $INST did not boot within $BOOT_TIMEOUT s (CUNXIANG_ASTERISK_BOOT_TIMEOUT)"
        fi
        # The control socket appears a moment after the process. The answer
        # must be the real one: an Asterisk that dies in its module
        # initialisation closes the socket and `-rx` still exits 0.
        if asterisk_rx 'core waitfullybooted' "$((left < 5 ? left : 5))" 2>/dev/null |
            grep -q 'fully booted' && pid_alive "$pid"; then
            break
        fi
        sleep 0.3
    done
}

cmd_start() {
    need_root
    resolve_instance "$@"
    [[ -f $INST/etc/asterisk.conf ]] || die "$INST/etc/asterisk.conf missing: render the templates into $INST/etc first"

    take_run_lock
    local pid
    if pid=$(instance_pid); then
        # possibly still booting, started by a concurrent `start`
        flock -u "$RUN_LOCK_FD"
        wait_booted "$pid"
        log "instance $INST already running (pid $pid)"
        return 0
    fi
    rm -f "$PIDFILE"

    local ids uid gid d
    ids=$(asterisk_ids)
    uid=${ids% *} gid=${ids#* }
    if host_id_taken passwd "$uid" || host_id_taken group "$gid"; then
        log "warning: the chroot's asterisk uid/gid $uid/$gid also names a host user/group" \
            "($(getent passwd "$uid" | cut -d: -f1)/$(getent group "$gid" | cut -d: -f1)); re-provision with --force"
    fi
    # log/cdr-csv: cdr_csv writes Master.csv there and does not create it
    for d in etc run spool log log/cdr-csv lib; do mkdir -p "$INST/$d"; done
    chown -R "$uid:$gid" "$INST"
    chmod -R o-rwx "$INST" # etc/manager.conf carries the AMI secret
    # The chroot must be able to walk down to the instance: parents only need x.
    d=$(dirname "$INST")
    while [[ $d != "$ROOT" && $d == "$ROOT"/* ]]; do chmod o+x "$d"; d=$(dirname "$d"); done

    mount_proc
    log "starting Asterisk for $INST"
    : >"$INST/log/asterisk.out"
    # own session/process group; stdin closed; the lock fd is not inherited
    setsid chroot "$ROOT" /usr/sbin/asterisk -C "$INNER/etc/asterisk.conf" \
        -U asterisk -G asterisk -f -n -q \
        </dev/null >>"$INST/log/asterisk.out" 2>&1 {RUN_LOCK_FD}>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    # proc is in use now (the new process runs inside the root): let others go
    flock -u "$RUN_LOCK_FD"

    wait_booted "$pid"
    log "Asterisk for $INST fully booted (pid $pid)"
}

cmd_stop() {
    need_root
    resolve_instance "$@"
    local pid
    if pid=$(instance_pid); then
        log "stopping Asterisk for $INST (pid $pid)"
        asterisk_rx 'core stop now' 10 >/dev/null 2>&1 || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if pid_alive "$pid"; then
            log "Asterisk for $INST still up after $STOP_TIMEOUT s: SIGTERM, then SIGKILL, to its process group"
            kill_group "$pid" || die "could not stop pid $pid"
        fi
    else
        log "instance $INST is not running"
    fi
    rm -f "$PIDFILE"
    take_run_lock
    umount_proc_if_idle
}

cmd_status() {
    need_root
    resolve_instance "$@"
    local pid
    if pid=$(instance_pid) && asterisk_rx 'core show version' 10 >/dev/null 2>&1; then
        printf 'running pid %s\n' "$pid"
        return 0
    fi
    printf 'stopped\n'
    exit 3
}

cmd_rx() {
    [[ $# -eq 2 ]] || usage
    need_root
    resolve_instance "$1"
    # without its own asterisk.conf, -rx would fall back to the root's
    # default control socket: refuse rather than talk to the wrong Asterisk
    [[ -f $INST/etc/asterisk.conf ]] || die "$INST/etc/asterisk.conf missing"
    asterisk_rx "$2" 60
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    case $cmd in
        provision) cmd_provision "$@" ;;
        root) [[ $# -eq 0 ]] || usage; cmd_root ;;
        start) [[ $# -eq 1 ]] || usage; cmd_start "$@" ;;
        stop) [[ $# -eq 1 ]] || usage; cmd_stop "$@" ;;
        status) [[ $# -eq 1 ]] || usage; cmd_status "$@" ;;
        rx) cmd_rx "$@" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
