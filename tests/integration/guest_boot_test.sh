#!/usr/bin/env bash
# guest_boot_test.sh: smoke test of glassbox's reference guest (orchestration/build-guest).
#
# Usage:  tests/integration/guest_boot_test.sh [GUEST_DIR]     (default: <repo>/build/guest)
# Env:    GB_TEST_NO_BUILD=1   do not run build-guest first (GUEST_DIR must be built)
#         GB_TEST_NO_KASLR=1   skip the second boot that checks KASLR
#         GB_TEST_TIMEOUT=S    seconds to wait for the ready marker (default 120)
#
# Boots the guest under TCG with the RAM layout glassbox uses (a shared memory-backend-file
# on /dev/shm), then checks, through QMP and the serial log:
#   1. GLASSBOX-GUEST-READY appears (prints the wall-clock seconds it took);
#   2. `echo hello` typed with QMP input-send-event key events comes back on the serial
#      console as "GLASSBOX-TTY1: echo hello";
#   3. `ps > /dev/ttyS0` typed on tty1 lists gb-cpuburn, gb-memwriter and 2 gb-sleeper;
#   3b. a QMP absolute pointer event reaches the guest's virtio tablet (read on tty1);
#   4. the kernel's _text address (from /proc/kallsyms) differs on a second boot (KASLR);
#   5. QMP system_powerdown makes QEMU exit (-no-reboot).
# Needs qemu-system-x86 and python3 (standard library only). Prints PASS or FAIL lines;
# exits 0 only if every check passed. Cleans up its temp dir, shm file and QEMU.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
GUEST=${1:-"$REPO/build/guest"}
TIMEOUT=${GB_TEST_TIMEOUT:-120}

if [ "${GB_TEST_NO_BUILD:-0}" != 1 ]; then
    "$REPO/orchestration/build-guest" "$GUEST"
fi
for f in vmlinuz initrd.img append; do
    [ -s "$GUEST/$f" ] || { echo "FAIL: $GUEST/$f missing (run orchestration/build-guest)"; exit 1; }
done

TMP=$(mktemp -d /tmp/gb-guest-test.XXXXXX)
SHM=/dev/shm/gb-guest-test-$$
QEMU_PID=
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    [ -n "${GB_TEST_KEEP:-}" ] && cp "$TMP/serial.log" "$GB_TEST_KEEP" 2>/dev/null; rm -rf "$TMP"
    rm -f "$SHM"
}
trap cleanup EXIT

FAILED=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }

# QMP client: `qmp CMD` runs a command and prints the reply; `qmp type TEXT` types TEXT
# on the guest keyboard with input-send-event (US layout, '\n' = Return).
cat > "$TMP/qmp.py" <<'EOF'
import json, socket, sys, time

PLAIN = {' ': 'spc', '\n': 'ret', '\t': 'tab', '/': 'slash', '-': 'minus', '.': 'dot',
         ',': 'comma', '=': 'equal', ';': 'semicolon', "'": 'apostrophe', '\\': 'backslash',
         '`': 'grave_accent', '[': 'bracket_left', ']': 'bracket_right'}
SHIFTED = {'>': 'dot', '<': 'comma', '|': 'backslash', '_': 'minus', '"': 'apostrophe',
           ':': 'semicolon', '?': 'slash', '+': 'equal', '~': 'grave_accent',
           '{': 'bracket_left', '}': 'bracket_right', '!': '1', '@': '2', '#': '3', '$': '4',
           '%': '5', '^': '6', '&': '7', '*': '8', '(': '9', ')': '0'}

def key(qcode, down):
    return {'type': 'key', 'data': {'down': down, 'key': {'type': 'qcode', 'data': qcode}}}

class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile('rwb')
        json.loads(self.f.readline())  # greeting
        self.cmd('qmp_capabilities')

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.f.write(json.dumps(msg).encode() + b'\n')
        self.f.flush()
        while True:  # skip events until the reply
            line = self.f.readline()
            if not line:
                raise RuntimeError('QMP connection closed')
            reply = json.loads(line)
            if 'error' in reply:
                raise RuntimeError(reply['error'])
            if 'return' in reply:
                return reply['return']

    def type_text(self, text):
        for ch in text:
            shift = False
            if ch.isascii() and ch.isalpha():
                qcode, shift = ch.lower(), ch.isupper()
            elif ch.isascii() and ch.isdigit():
                qcode = ch
            elif ch in PLAIN:
                qcode = PLAIN[ch]
            elif ch in SHIFTED:
                qcode, shift = SHIFTED[ch], True
            else:
                raise ValueError('cannot type %r' % ch)
            events = [key(qcode, True), key(qcode, False)]
            if shift:
                events = [key('shift', True)] + events + [key('shift', False)]
            self.cmd('input-send-event', events=events)
            # QEMU's PS/2 queue holds 16 bytes; keys sent faster than a (starved) vCPU
            # drains them are dropped. Pace the keys; line() below also verifies.
            time.sleep(0.015)

    def line(self, text, serial_log, tries=3):
        """Type TEXT + Return on tty1; check that tty1-shell echoed exactly TEXT to the
        serial log (GLASSBOX-TTY1: TEXT); on a mismatch (lost key) type it again."""
        prefix = b'GLASSBOX-TTY1: '
        def echoes():
            try:
                with open(serial_log, 'rb') as f:
                    return [l.rstrip(b'\r\n')[len(prefix):] for l in f if l.startswith(prefix)]
            except FileNotFoundError:
                return []
        for attempt in range(tries):
            before = len(echoes())
            self.type_text(text + '\n')
            deadline = time.time() + 15
            while time.time() < deadline:
                got = echoes()
                if len(got) > before:
                    if got[before] == text.encode():
                        return True
                    print('warning: typed %r, guest got %r; retrying' % (text, got[before]),
                          file=sys.stderr)
                    break
                time.sleep(0.05)
        return False

q = Qmp(sys.argv[1])
if sys.argv[2] == 'type':
    q.type_text(sys.argv[3])
elif sys.argv[2] == 'line':  # qmp line TEXT SERIAL_LOG: exit 0 if the guest echoed TEXT
    sys.exit(0 if q.line(sys.argv[3], sys.argv[4]) else 1)
elif sys.argv[2] == 'abs16000':  # pointer to (16000, 16000)
    q.cmd('input-send-event', events=[
        {'type': 'abs', 'data': {'axis': 'x', 'value': 16000}},
        {'type': 'abs', 'data': {'axis': 'y', 'value': 16000}}])
else:
    print(json.dumps(q.cmd(sys.argv[2])))
EOF
qmp() { python3 "$TMP/qmp.py" "$TMP/qmp.sock" "$@"; }
# line TEXT: type TEXT + Return on tty1, verified through the serial echo (3 tries).
line() { qmp line "$1" "$TMP/serial.log"; }

# wait_serial PATTERN SECONDS: wait until the serial log has a line matching PATTERN.
wait_serial() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE "$1" "$TMP/serial.log" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# boot: start QEMU in the background (sets QEMU_PID), wait for the ready marker, print the
# seconds it took into $BOOT_SECONDS. Returns 1 on timeout.
boot() {
    rm -f "$TMP/serial.log" "$TMP/qmp.sock" "$TMP/vnc.sock" "$SHM"
    local t0
    t0=$(date +%s.%N)
    qemu-system-x86_64 -accel tcg \
        -machine pc,memory-backend=mem \
        -object memory-backend-file,id=mem,size=256M,mem-path="$SHM",share=on -m 256 \
        -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" -append "$(cat "$GUEST/append")" \
        -display none -vnc unix:"$TMP/vnc.sock" \
        -chardev file,id=ser0,path="$TMP/serial.log" -serial chardev:ser0 \
        -qmp unix:"$TMP/qmp.sock",server=on,wait=off \
        -device virtio-tablet-pci -no-reboot &
    QEMU_PID=$!
    wait_serial '^GLASSBOX-GUEST-READY' "$TIMEOUT" || return 1
    BOOT_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
}

# kaslr_text: type a kallsyms query on tty1 and print the _text address it reports.
kaslr_text() {
    line 'grep -w _text /proc/kallsyms > /dev/ttyS0' || return 1
    wait_serial ' T _text' 20 || return 1
    grep -E ' T _text' "$TMP/serial.log" | head -n1 | cut -d' ' -f1
}

# powerdown: system_powerdown over QMP and wait (30 s) for QEMU to exit.
powerdown() {
    qmp system_powerdown > /dev/null
    local deadline=$((SECONDS + 30))
    while kill -0 "$QEMU_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$QEMU_PID" 2>/dev/null; then return 1; fi
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
}

# ---- Boot 1 -------------------------------------------------------------------------------
if ! boot; then
    fail "no GLASSBOX-GUEST-READY within ${TIMEOUT}s; serial log:"
    cat "$TMP/serial.log" 2>/dev/null || true
    exit 1
fi
pass "guest ready in ${BOOT_SECONDS}s: $(grep '^GLASSBOX-GUEST-INFO' "$TMP/serial.log" | tr -d '\r')"

# Plain typing (no retry) first: the exact echo must come back.
qmp type $'echo hello\n'
if wait_serial '^GLASSBOX-TTY1: echo hello.?$' 20; then pass "tty1 keyboard echo"; else fail "tty1 keyboard echo"; fi

# Process names, from the guest's own ps (the PS-DONE line marks the end of its output).
if line 'ps -o pid,comm > /dev/ttyS0; echo PS-DONE > /dev/ttyS0' && wait_serial '^PS-DONE' 20; then
    PS=$(tr -d '\r' < "$TMP/serial.log" | sed -n '/^GLASSBOX-TTY1: ps -o/,/^PS-DONE/p')
    for name in gb-cpuburn gb-memwriter; do
        grep -qE "^ *[0-9]+ +$name$" <<<"$PS" && pass "$name running" || fail "$name not in ps"
    done
    n=$(grep -cE '^ *[0-9]+ +gb-sleeper$' <<<"$PS" || true)
    [ "$n" = 2 ] && pass "2 gb-sleeper running" || fail "$n gb-sleeper in ps, expected 2"
else
    fail "no ps output on the serial console"
fi

# Absolute pointer: read the virtio tablet's event device on tty1, then move the pointer
# to x=16000 over QMP; an EV_ABS/ABS_X/16000 event is "03 00 00 00 80 3e 00 00".
line 'for e in /sys/class/input/event*; do grep -q Tablet $e/device/name && d=/dev/input/${e##*/}; done; hexdump -C -n 48 $d > /dev/ttyS0' \
    || fail "could not type the tablet reader command"
sleep 1
qmp abs16000 > /dev/null
if wait_serial ' 03 00 00 00 80 3e 00 00' 20; then pass "virtio tablet got the abs event"; else fail "virtio tablet: no abs event seen"; fi

TEXT1=
if [ "${GB_TEST_NO_KASLR:-0}" != 1 ]; then
    TEXT1=$(kaslr_text) || fail "could not read _text from /proc/kallsyms"
fi

if powerdown; then pass "system_powerdown made QEMU exit"; else fail "QEMU still running 30s after system_powerdown"; fi

# ---- Boot 2: KASLR --------------------------------------------------------------------------
if [ -n "$TEXT1" ]; then
    if boot; then
        pass "second boot ready in ${BOOT_SECONDS}s"
        TEXT2=$(kaslr_text) || TEXT2=
        if [ -n "$TEXT2" ] && [ "$TEXT1" != "$TEXT2" ]; then
            pass "KASLR: _text $TEXT1 then $TEXT2"
        else
            fail "KASLR: _text $TEXT1 then '${TEXT2}' (same, or unreadable)"
        fi
        powerdown || fail "second boot: QEMU still running after system_powerdown"
    else
        fail "second boot: no ready marker"
    fi
fi

[ "$FAILED" = 0 ] && echo "guest_boot_test: all checks passed" || echo "guest_boot_test: FAILED"
exit "$FAILED"
