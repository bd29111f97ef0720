"""A one-node Garage (a real S3 store) for the cache benchmarks: started in a
work directory, buckets made with a key of their own, objects uploaded."""

import secrets
import shutil
import subprocess
import sys
import time
import urllib.request

from .processes import free_port

REGION = "garage"


def wait_until(what, check, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Garage:
    """One node, replication factor 1, data in `work`."""

    def __init__(self, procs, work):
        self.bin = shutil.which("garage") or sys.exit("bench: garage is not installed")
        work.mkdir(parents=True, exist_ok=True)
        self.s3, self.rpc, self.admin = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.s3}"
        self.conf = work / "garage.toml"
        self.conf.write_text(f"""metadata_dir = "{work}/meta"
data_dir = "{work}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc}"
rpc_public_addr = "127.0.0.1:{self.rpc}"
rpc_secret = "{secrets.token_hex(32)}"
[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{self.s3}"
[admin]
api_bind_addr = "127.0.0.1:{self.admin}"
admin_token = "{secrets.token_hex(16)}"
""")
        procs.start([self.bin, "-c", str(self.conf), "server"], work / "garage.log")
        wait_until("garage", lambda: self.cli_ok("node", "id", "-q"))
        node = self.cli("node", "id", "-q").split("@")[0]
        self.cli("layout", "assign", "-z", "z", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        wait_until("garage health", lambda: http_ok(f"http://127.0.0.1:{self.admin}/health"))

    def cli_ok(self, *args):
        return subprocess.run([self.bin, "-c", str(self.conf), *args],
                              capture_output=True).returncode == 0

    def cli(self, *args):
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run([self.bin, "-c", str(self.conf), *args],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.strip()
            if time.monotonic() > deadline:
                sys.exit(f"bench: garage {' '.join(args)}: {r.stderr}")
            time.sleep(0.2)

    def bucket_with_key(self, bucket):
        key = "GK" + secrets.token_hex(12)
        secret = secrets.token_hex(32)
        self.cli("key", "import", "--yes", "-n", bucket, key, secret)
        self.cli("bucket", "create", bucket)
        self.cli("bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key)
        return key, secret

    def client(self, key, secret, url=None):
        import boto3  # curl 7.x does not sign S3 payloads
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=url or self.url, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))


EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def curl(url, key, secret):
    """Seconds for one SigV4-signed GET of `url`, its body discarded."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
            "--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{key}:{secret}",
            # Garage wants the payload hash header, which curl 7.x does not add.
            "-H", "x-amz-content-sha256: " + EMPTY_SHA256, url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    code, seconds = out.split()
    if code != "200":
        sys.exit(f"bench: GET {url} answered {code}")
    return float(seconds)


def metric(port, name):
    """The sum of a sidekick metric's samples whose name and labels start with `name`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.prometheus/metrics") as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name) and line[len(name)] in " {")


def fills_written(ports, seconds=120.0):
    """Waits until no fill of these sidekicks is still writing to the cache store
    (`sidekick_cache_fills_writing` is 0 on each), so that the next reader finds what
    they wrote."""
    def idle(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/.prometheus/metrics") as r:
            lines = r.read().decode().splitlines()
        return "sidekick_cache_fills_writing 0" in lines
    wait_until("the fills written", lambda: all(idle(p) for p in ports), seconds)
