"""Getting the machine ready: tools, the sidekick build, the test objects,
the CPU layout, the file descriptor limit."""

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from .settings import GIB, MIB, ROOT, SIDEKICK, SMALL_BODY

APT_PACKAGES = ["nginx-light", "haproxy", "wrk", "curl", "openssl"]
TOOLS = ["nginx", "haproxy", "wrk", "curl", "taskset", "openssl"]


def ensure_tools(tools=TOOLS, packages=APT_PACKAGES):
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}; run as root or: "
                 f"apt-get install -y {' '.join(packages)}")
    print(f"installing {' '.join(packages)} (missing: "
          f"{', '.join(missing)})", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Stop the packages' maintainer scripts from starting system nginx and
    # HAProxy services: this script runs its own instances.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y"] + packages,
                       check=True, env=env)
    finally:
        if added_policy:
            policy.unlink()


def build_sidekick():
    """Returns None when sidekick is usable, else the reason it is not."""
    if shutil.which("cargo") is None:
        return "cargo not found"
    print("building sidekick: cargo build --release", flush=True)
    if subprocess.run(["cargo", "build", "--release"], cwd=ROOT).returncode:
        return "cargo build --release failed"
    return sidekick_usable(SIDEKICK)


def sidekick_usable(binary):
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        help_run = subprocess.run([str(binary), "--help"],
                                  capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sidekick --help failed: {e}"
    if help_run.returncode:
        return f"sidekick --help exited with {help_run.returncode}"
    return None


def make_data(data_dir):
    """Objects served by the backends, on tmpfs so they come from memory.
    Real bytes, not sparse files: a hole would skip the page copies."""
    www = data_dir / "www"
    www.mkdir()
    (www / "small").write_bytes(b"x" * (SMALL_BODY - 1) + b"\n")
    chunk = os.urandom(MIB)
    for name, size in (("128m", 128 * MIB), ("1g", GIB)):
        with open(www / name, "wb") as f:
            for _ in range(size // MIB):
                f.write(chunk)
    return www


def cpu_layout():
    """(load generator + backends CPU, proxy CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only; proxy and load generator share it")
        return cpus[0], cpus[0]
    return cpus[0], cpus[1]


def raise_fd_limit():
    # 1,000 idle client connections live in this process; wrk, nginx and
    # HAProxy inherit the limit too.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

