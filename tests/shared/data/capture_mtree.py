#!/usr/bin/env python3
# Captures `info mtree -f` from a real QEMU through QMP (human-monitor-command) and saves the
# returned string as is (CRLF line ends, as QMP returns them). Used to make mtree_*.txt here.
# Usage: capture_mtree.py MACHINE SIZE OUT RUN_SECONDS [extra qemu args...]
#   RUN_SECONDS < 0: start with -S (no guest code runs); else let SeaBIOS run that long first.
# The RAM file goes to /dev/shm (sparse, costs nothing); it and the socket are removed after.
import json
import os
import socket
import subprocess
import sys
import time

machine, size, out, run_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
extra = sys.argv[5:]
sock = f"/tmp/gb-mtree-{os.getpid()}.sock"
shm = f"/dev/shm/gb-mtree-test-{os.getpid()}"
args = ["qemu-system-x86_64", "-machine", f"{machine},memory-backend=glassbox-ram",
        "-object", f"memory-backend-file,id=glassbox-ram,size={size},mem-path={shm},share=on",
        "-m", size, "-nodefaults", "-display", "none",
        "-qmp", f"unix:{sock},server=on,wait=off"] + extra
if run_s < 0:
    args.append("-S")
qemu = subprocess.Popen(args)
try:
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    f = s.makefile("rw")

    def cmd(obj):
        f.write(json.dumps(obj) + "\n")
        f.flush()
        while True:  # skip events
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                return r

    json.loads(f.readline())  # greeting
    cmd({"execute": "qmp_capabilities"})
    if run_s > 0:
        time.sleep(run_s)
    r = cmd({"execute": "human-monitor-command",
             "arguments": {"command-line": "info mtree -f"}})
    with open(out, "w", newline="") as o:
        o.write(r["return"])
    cmd({"execute": "quit"})
    qemu.wait(timeout=10)
finally:
    if qemu.poll() is None:
        qemu.kill()
    for p in (shm, sock):
        if os.path.exists(p):
            os.unlink(p)
