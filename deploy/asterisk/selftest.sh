#!/usr/bin/env bash
# 村响 (cunxiang) — prove the Asterisk sandbox for real on this machine:
# provision, render the templates into two instances with their own free
# ports, start both, check CLI, AMI, modules, an originated call with its
# events and CDR, then stop both (twice) and check proc is unmounted.
#
#   deploy/asterisk/selftest.sh [--force-provision] [--keep]
#
# Prints PASS/FAIL lines and "N passed, N failed"; exits non-zero on failure.
# --keep leaves the two instance directories (stopped) for inspection.
# The checks pass values to `bash -c '…'` snippets as "$1"…, on purpose.
# shellcheck disable=SC2016
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SB=$HERE/sandbox.sh
TEMPLATES=$HERE/templates
FORCE=()
KEEP=0
for arg in "$@"; do
    case $arg in
        --force-provision) FORCE=(--force) ;;
        --keep) KEEP=1 ;;
        *) echo "usage: $0 [--force-provision] [--keep]" >&2; exit 2 ;;
    esac
done

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# ---------------------------------------------------------------- python

PY=python3
if [[ -n ${CUNXIANG_SELFTEST_FORCE_VENV:-} ]] || ! python3 -c 'import jinja2' 2>/dev/null; then
    VENV=/tmp/cunxiang-selftest-venv
    if ! "$VENV/bin/python" -c 'import jinja2' 2>/dev/null; then
        echo "creating $VENV with jinja2" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q jinja2
    fi
    PY=$VENV/bin/python
fi

# ------------------------------------------------------------- provision

t0=$SECONDS
ROOT=$("$SB" provision "${FORCE[@]}")
echo "provision: $((SECONDS - t0)) s, root $ROOT, $(du -sh "$ROOT" | cut -f1), $(cat "$ROOT/.cunxiang-provisioned")"
check "provision prints the root and 'root' agrees" test "$("$SB" root)" = "$ROOT"
check "provision again is a no-op with the same root" test "$("$SB" provision 2>/dev/null)" = "$ROOT"

NAME=selftest-$$
A=$ROOT/srv/cunxiang/$NAME-a
B=$ROOT/srv/cunxiang/$NAME-b

cleanup() {
    "$SB" stop "$A" >/dev/null 2>&1 || true
    "$SB" stop "$B" >/dev/null 2>&1 || true
    if [[ $KEEP -eq 0 ]]; then rm -rf --one-file-system -- "$A" "$B"; fi
}
trap cleanup EXIT

# --------------------------------------------------------------- render

# four free ports: AMI (TCP) and SIP (UDP) for each instance
read -r AMI_A AMI_B SIP_A SIP_B < <("$PY" -c '
import socket
socks = [socket.socket(socket.AF_INET, t) for t in (socket.SOCK_STREAM,) * 2 + (socket.SOCK_DGRAM,) * 2]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
SECRET=$("$PY" -c 'import secrets; print(secrets.token_hex(12))')

render() { # INSTANCE_DIR SYSTEM_NAME AMI_PORT SIP_PORT
    mkdir -p "$1/etc"
    "$PY" - "$TEMPLATES" "$1/etc" "${1#"$ROOT"}" "$2" "$3" "$4" "$SECRET" <<'EOF'
import sys, pathlib, jinja2
templates, out, inner, name, ami_port, sip_port, secret = sys.argv[1:]
env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                         undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
ctx = dict(instance_dir=inner, system_name=name, ami_bind="127.0.0.1", ami_port=int(ami_port),
           ami_user="cunxiang", ami_secret=secret, sip_port=int(sip_port))
for t in env.list_templates(extensions=["j2"]):
    (pathlib.Path(out) / t[:-3]).write_text(env.get_template(t).render(**ctx))
EOF
}
render "$A" "${NAME//-/}a" "$AMI_A" "$SIP_A"
render "$B" "${NAME//-/}b" "$AMI_B" "$SIP_B"
echo "instances: $A (AMI $AMI_A, SIP $SIP_A), $B (AMI $AMI_B, SIP $SIP_B)"

# ---------------------------------------------------------------- start

"$SB" start "$A" 2>/tmp/"$NAME"-a.err &
pa=$!
"$SB" start "$B" 2>/tmp/"$NAME"-b.err &
pb=$!
rc_a=0 rc_b=0
wait "$pa" || rc_a=$?
wait "$pb" || rc_b=$?
check "start A (concurrently with B)" test "$rc_a" -eq 0
check "start B (concurrently with A)" test "$rc_b" -eq 0
if ((rc_a != 0 || rc_b != 0)); then cat /tmp/"$NAME"-a.err /tmp/"$NAME"-b.err; fi
rm -f /tmp/"$NAME"-a.err /tmp/"$NAME"-b.err
check "proc is mounted in the root" mountpoint -q "$ROOT/proc"

st_a=$("$SB" status "$A" 2>/dev/null || true)
st_b=$("$SB" status "$B" 2>/dev/null || true)
echo "status A: $st_a; status B: $st_b"
check "status A says running" grep -qx 'running pid [0-9]*' <<<"$st_a"
check "status B says running" grep -qx 'running pid [0-9]*' <<<"$st_b"
check "A and B are two processes" test "$st_a" != "$st_b"
pid_a=${st_a##* }
check "starting A again is a no-op (same pid)" \
    bash -c '"$1" start "$2" 2>/dev/null && [[ $("$1" status "$2") == "running pid $3" ]]' _ "$SB" "$A" "$pid_a"

ver_a=$("$SB" rx "$A" 'core show version' || true)
ver_b=$("$SB" rx "$B" 'core show version' || true)
echo "version: $ver_a"
check "A answers 'core show version' (Asterisk 22)" grep -q '^Asterisk 22\.' <<<"$ver_a"
check "B answers 'core show version' (Asterisk 22)" grep -q '^Asterisk 22\.' <<<"$ver_b"

# --------------------------------------------------------- isolation

check "A and B have their own control sockets" test -S "$A/run/asterisk.ctl" -a -S "$B/run/asterisk.ctl"
check "A and B have their own astdb" test -f "$A/lib/astdb.sqlite3" -a -f "$B/lib/astdb.sqlite3"
set_a=$("$SB" rx "$A" 'core show settings' || true)
set_b=$("$SB" rx "$B" 'core show settings' || true)
uuid_a=$(awk -F': *' '/PBX UUID/ { print $2 }' <<<"$set_a")
uuid_b=$(awk -F': *' '/PBX UUID/ { print $2 }' <<<"$set_b")
check "A and B have distinct PBX UUIDs (kept in their own astdb)" test -n "$uuid_a" -a "$uuid_a" != "$uuid_b"
check "A's spool/log/run dirs are its own" \
    grep -q "Spool directory: *${A#"$ROOT"}/spool" <<<"$set_a"
check "A uses the shared module and data dirs" \
    bash -c 'grep -q "Module directory: */usr/lib/.*/asterisk/modules" <<<"$1" && grep -q "Data directory: */usr/share/asterisk$" <<<"$1"' _ "$set_a"

check "A: PJSIP UDP transport listens on 127.0.0.1:$SIP_A" \
    bash -c '"$1" rx "$2" "pjsip show transports" | grep -q "transport-udp *udp *[0-9]* *[0-9]* *127\.0\.0\.1:$3\b"' _ "$SB" "$A" "$SIP_A"
check "B: AMI bound to 127.0.0.1:$AMI_B" \
    bash -c '"$1" rx "$2" "manager show settings" | grep -Eq "TCP Bindaddress: *127\.0\.0\.1:$3 *$"' _ "$SB" "$B" "$AMI_B"

# ------------------------------------------------------------ modules

modules_ok() { # INSTANCE_DIR
    local inst=$1 m bad=0 shown
    shown=$("$SB" rx "$inst" 'module show') || return 1
    while read -r m; do
        if ! grep -Eq "^${m%.so}\.so +.* Running " <<<"$shown"; then
            echo "  not running in ${inst##*/}: $m"
            bad=1
        fi
    done < <(awk -F' *= *' '$1 == "load" { print $2 }' "$inst/etc/modules.conf")
    if grep -Eai 'failed to load|declined|error loading|failed to resolve|not loading module' \
        "$inst/log/messages.log" "$inst/log/asterisk.out"; then
        bad=1
    fi
    return "$bad"
}
check "A: every module in modules.conf is Running; no load failure in its logs" modules_ok "$A"
check "B: every module in modules.conf is Running; no load failure in its logs" modules_ok "$B"
check "A: no ERROR or WARNING at start-up" bash -c '! grep -E "ERROR|WARNING" "$1"' _ "$A/log/messages.log"

# ----------------------------------------------------------------- AMI

AMI_PY='
import socket, sys, time

def connect(port, user, secret):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(100)  # banner "Asterisk Call Manager/…"
    ami = AMI(s)
    ami.send("Login", Username=user, Secret=secret, ActionID="login")
    return ami, ami.response("login")

class AMI:
    def __init__(self, sock):
        self.sock, self.buf, self.events = sock, b"", []
    def send(self, action, **kv):
        msg = "Action: %s\r\n" % action + "".join("%s: %s\r\n" % i for i in kv.items()) + "\r\n"
        self.sock.sendall(msg.encode())
    def read(self, deadline):
        while b"\r\n\r\n" not in self.buf:
            self.sock.settimeout(max(0.1, deadline - time.time()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        block, self.buf = self.buf.split(b"\r\n\r\n", 1)
        msg = {}
        for line in block.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(": ")
            msg.setdefault(k, v)
        return msg
    def response(self, action_id, timeout=10):
        deadline = time.time() + timeout
        while True:
            m = self.read(deadline)
            if m.get("ActionID") == action_id and "Response" in m:
                return m
            self.events.append(m)

mode, port, user, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ami, r = connect(port, user, secret)
print("login:", r.get("Response"), r.get("Message"))
if r.get("Response") != "Success":
    sys.exit(1)
if mode == "login":
    ami.send("Command", Command="core show version", ActionID="cmd")
    r = ami.response("cmd")
    print("command:", r.get("Response"), r.get("Message"))
    sys.exit(0 if r.get("Response") == "Error" else 2)
if mode == "originate":
    ami.send("Originate", Channel="Local/s@selftest", Application="Wait", Data="10",
             Async="true", ActionID="orig")
    r = ami.response("orig")
    print("originate:", r.get("Response"), r.get("Message"))
    deadline, got = time.time() + 30, {}
    events = ami.events
    while time.time() < deadline:
        while events:
            e = events.pop(0)
            name = e.get("Event")
            if name == "Hangup":
                got.setdefault("Hangup", []).append(e.get("Channel"))
            elif name == "OriginateResponse":
                got["OriginateResponse"] = e.get("Response")
            elif name == "UserEvent" and e.get("UserEvent") == "SandboxSelftest":
                got["Playback"] = e.get("Playback")
            elif name == "Cdr":
                got.setdefault("Cdr", []).append(e.get("Disposition"))
        if len(got.get("Hangup", [])) >= 2 and "Cdr" in got and "Playback" in got:
            break
        try:
            events.append(ami.read(deadline))
        except (socket.timeout, TimeoutError):
            break
    for k, v in got.items():
        print("%s: %s" % (k, v))
    ok = (got.get("OriginateResponse") == "Success" and len(got.get("Hangup", [])) >= 2
          and got.get("Playback") == "SUCCESS" and "Cdr" in got)
    sys.exit(0 if ok else 3)
'
ami() { "$PY" -c "$AMI_PY" "$@"; }

check "A: AMI login succeeds; the Command action is refused" ami login "$AMI_A" cunxiang "$SECRET"
check "B: AMI login succeeds; the Command action is refused" ami login "$AMI_B" cunxiang "$SECRET"
check "A: AMI login with a wrong secret fails" bash -c '! "$@" >/dev/null' _ "$PY" -c "$AMI_PY" login "$AMI_A" cunxiang wrong
check "A: Originate Local/s@selftest: answered, beep played from the shared sounds, both halves hung up, Cdr event" \
    ami originate "$AMI_A" cunxiang "$SECRET"
csv=$A/log/cdr-csv/Master.csv
check "A: the call's CDR is in log/cdr-csv/Master.csv" bash -c '[[ -s $1 ]] && grep -q "Local/s@selftest" "$1"' _ "$csv"
check "A: no ERROR or WARNING in messages.log after the call" bash -c '! grep -E "ERROR|WARNING" "$1"' _ "$A/log/messages.log"
check "B: saw no call (its CDR file is empty or absent)" bash -c '[[ ! -s $1 ]]' _ "$B/log/cdr-csv/Master.csv"

# ----------------------------------------------------------------- stop

check "stop A" "$SB" stop "$A"
st=0
out=$("$SB" status "$A" 2>/dev/null) || st=$?
check "status A says 'stopped' and exits 3" test "$out" = stopped -a "$st" -eq 3
check "B still answers after A stopped" bash -c '"$1" rx "$2" "core show version" | grep -q "^Asterisk 22\."' _ "$SB" "$B"
check "proc stays mounted while B runs" mountpoint -q "$ROOT/proc"
check "stop B" "$SB" stop "$B"

# Another test run may share this root: then proc rightly stays mounted.
others_in_root() {
    local p l found=""
    for p in /proc/[0-9]*; do
        l=$(readlink "$p/root" 2>/dev/null) || continue
        if [[ $l == "$ROOT" || $l == "$ROOT"/* ]]; then found+=" ${p#/proc/}"; fi
    done
    printf '%s' "$found"
}
if ! mountpoint -q "$ROOT/proc"; then
    pass "proc is unmounted after the last stop"
elif [[ -n $(others_in_root) ]]; then
    echo "SKIP: proc is still mounted, but other processes run in this root:$(others_in_root)"
else
    fail "proc is unmounted after the last stop"
fi
check "stop A again succeeds" "$SB" stop "$A"
check "stop B again succeeds" "$SB" stop "$B"
check "no pid files left" test ! -e "$A/run/sandbox.pid" -a ! -e "$B/run/sandbox.pid"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
