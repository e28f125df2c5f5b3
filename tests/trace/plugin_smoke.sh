#!/usr/bin/env bash
# plugin_smoke.sh: smoke test of the QEMU TCG plugin build/lib/libglassbox-trace.so against the
# reference guest (orchestration/build-guest).
#
# Usage:  tests/trace/plugin_smoke.sh [PLUGIN_SO] [GUEST_DIR]
#         (defaults: <repo>/build/lib/libglassbox-trace.so, <repo>/build/guest)
# Env:    GB_TEST_TIMEOUT=S   seconds to wait for GLASSBOX-GUEST-READY (default 120)
#
# Checks:
#   1. bad plugin arguments make QEMU refuse to start, with a "glassbox-trace:" line on stderr;
#   2. the guest boots under TCG with the plugin in stream mode (RAM in a shared
#      memory-backend-file on /dev/shm) to GLASSBOX-GUEST-READY (prints the seconds it took);
#   3. the trace file (shared/trace_ring.hpp layout, read here with Python's struct) is
#      published (magic, version, mode, geometry), counts TB translations, has TB records,
#      counters and vCPU 0 events, and the records' ram_offset points at the same bytes in the
#      RAM file (for the most recently translated kernel TBs, read while the guest runs).
# Needs qemu-system-x86 and python3 (standard library only). Prints PASS/FAIL lines; exits 0 only
# if every check passed. Cleans up its temp dir, shm files and QEMU.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
PLUGIN=${1:-"$REPO/build/lib/libglassbox-trace.so"}
GUEST=${2:-"$REPO/build/guest"}
TIMEOUT=${GB_TEST_TIMEOUT:-120}

for f in "$PLUGIN" "$GUEST/vmlinuz" "$GUEST/initrd.img" "$GUEST/append"; do
    [ -s "$f" ] || { echo "FAIL: $f missing (build the plugin / run orchestration/build-guest)"; exit 1; }
done

TMP=$(mktemp -d /tmp/gb-plugin-smoke.XXXXXX)
RAM=/dev/shm/gb-plugin-smoke-$$.ram
TRACE=/dev/shm/gb-plugin-smoke-$$.trace
QEMU_PID=
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    rm -f "$RAM" "$TRACE"
}
trap cleanup EXIT

FAILED=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }

QEMU=(qemu-system-x86_64 -accel tcg
    -machine pc,memory-backend=mem
    -object memory-backend-file,id=mem,size=256M,mem-path="$RAM",share=on -m 256
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" -append "$(cat "$GUEST/append")"
    -display none -chardev file,id=ser0,path="$TMP/serial.log" -serial chardev:ser0
    -no-reboot)

# ---- 1. Bad arguments ---------------------------------------------------------------------------
set +e
timeout 30 "${QEMU[@]}" -plugin "$PLUGIN",shm="$TRACE",mode=bogus > "$TMP/bad.out" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'glassbox-trace: bad argument .mode=bogus' "$TMP/bad.out"; then
    pass "mode=bogus refused (exit $rc): $(grep -m1 glassbox-trace "$TMP/bad.out")"
else
    fail "mode=bogus not refused (exit $rc): $(cat "$TMP/bad.out")"
fi

# ---- 2. Boot with the plugin ----------------------------------------------------------------------
t0=$(date +%s.%N)
"${QEMU[@]}" -plugin "$PLUGIN",shm="$TRACE",mode=stream,ram="$RAM" 2> "$TMP/qemu.err" &
QEMU_PID=$!
deadline=$((SECONDS + TIMEOUT))
ready=0
while [ $SECONDS -lt $deadline ] && kill -0 "$QEMU_PID" 2>/dev/null; do
    if grep -q '^GLASSBOX-GUEST-READY' "$TMP/serial.log" 2>/dev/null; then ready=1; break; fi
    sleep 0.1
done
if [ $ready = 1 ]; then
    pass "GLASSBOX-GUEST-READY with the plugin (stream mode) after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
else
    fail "no GLASSBOX-GUEST-READY within ${TIMEOUT}s; qemu stderr: $(cat "$TMP/qemu.err")"
    exit 1
fi

# ---- 3. The trace file, read while the guest runs -------------------------------------------------
if python3 - "$TRACE" "$RAM" <<'EOF'; then pass "trace file checks"; else fail "trace file checks"; fi
import mmap, struct, sys

trace_path, ram_path = sys.argv[1], sys.argv[2]
ok = True
def check(cond, what):
    global ok
    print(("  ok   " if cond else "  BAD  ") + what)
    ok = ok and cond

with open(trace_path, 'rb') as f:
    tr = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
(magic, version, mode, generation, pid, n_vcpus, ring_events, counters_off, max_tbs,
 tb_ring_off, tb_ring_bytes, rings_off, stride, file_bytes, tbs_translated, tb_overflow,
 bad_vcpu, outside_ram, state) = struct.unpack_from('<8sIIQQIIQQQQQQQQQQQI', tr, 0)
check(magic == b'GBTRACE1' and version == 1, 'magic GBTRACE1, version 1')
check(mode == 2, 'mode stream')
check(generation != 0 and n_vcpus >= 1 and file_bytes == len(tr), 'generation, n_vcpus, file size')
check(tbs_translated > 1000, f'tbs_translated {tbs_translated} > 1000')
print(f'  info tb_ids_overflowed={tb_overflow} events_bad_vcpu={bad_vcpu} tbs_outside_ram={outside_ram}')
counters = struct.unpack_from(f'<{min(max_tbs, tbs_translated)}Q', tr, counters_off)
check(sum(counters) > 1_000_000, f'counters sum {sum(counters)} > 1e6')
head, tail, drops = (struct.unpack_from('<Q', tr, rings_off + 64 * k)[0] for k in range(3))
check(head > 0, f'vCPU 0 events written {head}, consumed {tail}, dropped {drops}')
check(head - tail <= ring_events, 'vCPU 0 ring within capacity')
tb_head, tb_tail, tb_drops = (struct.unpack_from('<Q', tr, tb_ring_off + 64 * k)[0] for k in range(3))
check(tb_head > 0 and tb_head <= tb_ring_bytes, f'TB ring head {tb_head} (drops {tb_drops})')

# Walk the TB records (no wrap expected on one boot with the default 64 MiB ring).
data = tb_ring_off + 192
pos, records, kernel = 0, 0, []
while pos < tb_head:
    m, total = struct.unpack_from('<II', tr, data + pos)
    if m == 0x50414444:
        pos += total
        continue
    if m != 0x54425231 or total < 40 or total % 8:
        break
    _, _, tb_id, n_insns, pc, ram_offset, size, flags = struct.unpack_from('<IIIIQQII', tr, data + pos)
    records += 1
    if pc >= 0xffffffff80000000 and ram_offset != (1 << 64) - 1:
        kernel.append((tb_id, pc, ram_offset, bytes(tr[data + pos + 40: data + pos + 40 + size]), flags))
    pos += total
check(pos == tb_head and records > 1000, f'{records} TB records parse to head')
check(len(kernel) > 1000, f'{len(kernel)} kernel TB records with a ram_offset')
# The kernel patches its text during boot (alternatives, ftrace, return thunks), so only recent
# translations are expected to still match the RAM file.
recent = kernel[-2000:]
with open(ram_path, 'rb') as ram:
    match = 0
    for tb_id, pc, off, b, flags in recent:
        ram.seek(off)
        match += ram.read(len(b)) == b
check(match >= 0.9 * len(recent), f'{match}/{len(recent)} recent kernel TBs match the RAM file at ram_offset')
tb_id, pc, off, b, flags = recent[-1]
print(f'  info sample TB tb_id={tb_id} pc={pc:#x} ram_offset={off:#x} flags={flags:#x} bytes={b[:16].hex()}')
sys.exit(0 if ok else 1)
EOF

[ $FAILED = 0 ] && echo "PASS: plugin smoke" || echo "FAIL: plugin smoke"
exit $FAILED
