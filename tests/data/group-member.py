#!/usr/bin/python3
"""A stand-in for a training process, for the group-task tests.

    group-member.py MODE DIR

Every process appends what happens to it to DIR/log.RANK, one line each:
"<time> <event> restart=<GRIDRUN_RESTART_COUNT> port=<MASTER_PORT>".

MODE:
  meet     RANK 0 listens on MASTER_ADDR:MASTER_PORT, every other rank
           connects and gets a greeting: the rendezvous a torchrun program
           makes.  Also records the environment in DIR/env.RANK, the host
           name in DIR/host.RANK, and (RANK 0) the address each connection
           came from in DIR/peers, one a line.
  crash    like meet, but on its first start (restart 0) RANK 1 exits 3,
           while the others wait to be stopped (they log "term" on SIGTERM).
  fail     RANK 1 exits 3 every time.
  preempt  waits; logs "signal" on GRIDRUN_PREEMPT_SIGNAL and goes on
           waiting, logs "term" on SIGTERM and exits 143.  On a restart it
           logs "resumed" and exits 0.
"""
import os
import signal
import socket
import sys
import time

mode, out = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
world = int(os.environ["WORLD_SIZE"])
restart = int(os.environ.get("GRIDRUN_RESTART_COUNT", "0"))
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])


def log(event):
    with open(os.path.join(out, "log.%d" % rank), "a") as f:
        f.write("%.3f %s restart=%d port=%d\n" % (time.time(), event, restart, port))


def on_term(signum, frame):
    log("term")
    sys.exit(143)


def meet():
    if rank == 0:
        srv = socket.create_server((addr, port))
        for _ in range(world - 1):
            c, peer = srv.accept()
            with open(os.path.join(out, "peers"), "a") as f:
                f.write("%s\n" % peer[0])
            c.sendall(b"hello")
            c.close()
        srv.close()
    else:
        until = time.time() + 20
        while True:
            try:
                c = socket.create_connection((addr, port), timeout=5)
                break
            except OSError:
                if time.time() > until:
                    raise
                time.sleep(0.05)
        assert c.recv(5) == b"hello"
        c.close()
    log("met")


signal.signal(signal.SIGTERM, on_term)
log("start")
if mode in ("meet", "crash"):
    with open(os.path.join(out, "env.%d" % rank), "w") as f:
        for k in sorted(os.environ):
            f.write("%s=%s\n" % (k, os.environ[k]))
    with open(os.path.join(out, "host.%d" % rank), "w") as f:
        f.write(socket.gethostname() + "\n")
    if mode == "crash" and restart == 0:
        if rank == 1:
            time.sleep(0.3)
            log("crash")
            os._exit(3)
        time.sleep(60)
        sys.exit(1)
    meet()
elif mode == "fail":
    if rank == 1:
        log("crash")
        os._exit(3)
    time.sleep(60)
elif mode == "preempt":
    if restart > 0:
        log("resumed")
        sys.exit(0)
    sig = getattr(signal, os.environ.get("GRIDRUN_PREEMPT_SIGNAL", "SIGUSR2"))
    signal.signal(sig, lambda s, f: log("signal"))
    open(os.path.join(out, "ready.%d" % rank), "w").close()
    while True:
        time.sleep(0.05)
log("end")
