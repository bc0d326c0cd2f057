#!/usr/bin/env python3
"""Benchmarks of issue 2, each next to a baseline measured in the same run.

1. `ingot up` on a fresh home until its API answers, vs. the baseline: the
   static file server the staticfile buildpack uses, started directly on the
   host, until it answers.
2. `ingot push` of the static site until its first 200 through the router,
   vs. the same baseline.

Run as root after `cargo build --release`:  scripts/bench.py [RUNS]
Prints medians and ratios; docs/benchmarks.md records them.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INGOT = os.path.join(ROOT, "target", "release", "ingot")
SITE = os.path.join(ROOT, "crates", "ingot", "tests", "fixtures", "static-site")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path="/", host=None):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path, headers={"Host": host} if host else {})
        return conn.getresponse().status
    except OSError:
        return None


def until(predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise SystemExit("timed out")


def baseline_static_server():
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen([INGOT, "lifecycle", "static-server", "--root", SITE, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: get(port) == 200)
    elapsed = time.monotonic() - start
    proc.terminate()
    proc.wait()
    return elapsed


class Platform:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="ingot-bench-")
        self.api = free_port()
        self.router = free_port()
        self.router_tls = free_port()
        self.env = dict(os.environ, INGOT_CLI_HOME=os.path.join(self.tmp, "cli"))

    def up(self):
        start = time.monotonic()
        self.proc = subprocess.Popen(
            [INGOT, "up", "--home", os.path.join(self.tmp, "home"), "--api-listen", f"127.0.0.1:{self.api}",
             "--router-listen", f"127.0.0.1:{self.router}",
             "--router-tls-listen", f"127.0.0.1:{self.router_tls}", "--host-prefix", "ibench",
             "--container-subnet", "10.249.0.0/24"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        until(lambda: get(self.api, "/v3/info") == 200)
        elapsed = time.monotonic() - start
        for line in self.proc.stdout:
            if line.startswith("Push an app"):
                break
        return elapsed

    def push(self, name):
        start = time.monotonic()
        subprocess.run([INGOT, "push", name, "-p", SITE], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: get(self.router, "/", f"{name}.apps.localhost") == 200)
        return time.monotonic() - start

    def down(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        shutil.rmtree(self.tmp, ignore_errors=True)


def report(label, samples, baseline):
    m, b = statistics.median(samples), statistics.median(baseline)
    print(f"{label:<40} median {m*1000:8.1f} ms   baseline {b*1000:7.1f} ms   ratio {m/b:6.1f}x"
          f"   (min {min(samples)*1000:.1f}, max {max(samples)*1000:.1f}, n={len(samples)})")


def main():
    if not os.path.exists(INGOT):
        raise SystemExit("build first: cargo build --release")
    up_times, push_times, base_up, base_push = [], [], [], []
    for _ in range(RUNS):
        base_up.append(baseline_static_server())
        platform = Platform()
        try:
            up_times.append(platform.up())
            base_push.append(baseline_static_server())
            push_times.append(platform.push("bench"))
        finally:
            platform.down()
    report("ingot up → API ready", up_times, base_up)
    report("push static site → first 200 via router", push_times, base_push)
    print(json.dumps({"up": up_times, "push": push_times, "baseline": base_up + base_push}))


if __name__ == "__main__":
    main()
