"""boto3 through sidekick to a Garage cluster (SigV4 verified by the servers).

Usage: s3_workload.py ENDPOINT ACCESS_KEY SECRET_KEY REGION BUCKET

1. checks: awkward keys, a 64 MiB multipart upload with its parts sent in parallel,
   ranged and parallel downloads, a paginated LIST, server-side copies, deletes;
   every body compared by SHA-256.
2. load: writers (PUT, now and then a COPY), readers (GET, ranged GET, LIST) and a
   multipart uploader at once, until a line `stop` arrives on stdin (or stdin
   closes). Prints `load running` when it has begun and a `progress` line twice a
   second. Meanwhile the test kills a node and restarts it.
3. verify: every object whose PUT or COPY was acknowledged reads back identical,
   LIST shows exactly those, then they are deleted.

A failed operation is one that still failed after boto3's retries (a body cut short
because its node died is read again, as boto3's own downloads do; both are counted
as retries). Prints `s3 workload ok: ...` and exits 0 when no operation failed;
otherwise prints the failures and exits 1.
"""
import concurrent.futures
import hashlib
import io
import os
import random
import sys
import threading
import time

import boto3
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access_key, secret_key, region, bucket = sys.argv[1:6]
WRITERS, READERS = 3, 3
SIZES = [1 << 10, 16 << 10, 100 << 10, 300 << 10, 1 << 20]
MIB = 1 << 20
# Parts of 8 MiB, four in flight: each is far above sidekick's retry buffer, so a
# part caught on the killed node is answered 502 and sent again by boto3.
MULTIPART = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                           max_concurrency=4)
CUT_SHORT = tuple(
    cls
    for cls in (
        getattr(botocore.exceptions, "ResponseStreamingError", None),
        botocore.exceptions.IncompleteReadError,
        urllib3.exceptions.ProtocolError,
    )
    if cls is not None
)


def client():
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=16,
        ),
    )


def sha(data):
    return hashlib.sha256(data).hexdigest()


def body(seed, size):
    return random.Random(seed).randbytes(size)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}
        self.retries = 0
        self.rereads = 0
        self.failures = []

    def done(self, op, response=None):
        retries = (response or {}).get("ResponseMetadata", {}).get("RetryAttempts", 0)
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1
            self.retries += retries

    def reread(self):
        with self.lock:
            self.rereads += 1

    def failed(self, what):
        with self.lock:
            self.failures.append(what)

    def total(self):
        with self.lock:
            return sum(self.ops.values())


stats = Stats()


def check(cond, what):
    if not cond:
        stats.failed(what)
    return cond


def get_body(s3, key, **kw):
    """GET, reading the body again (up to three times) when its node died mid-way."""
    for attempt in range(3):
        resp = s3.get_object(Bucket=bucket, Key=key, **kw)
        try:
            return resp, resp["Body"].read()
        except CUT_SHORT:
            if attempt == 2:
                raise
            stats.reread()


def put(s3, key, data):
    resp = s3.put_object(Bucket=bucket, Key=key, Body=data)
    stats.done("PUT", resp)
    # Both Garage and MinIO give a single PUT's MD5 as its ETag.
    check(resp["ETag"].strip('"') == hashlib.md5(data).hexdigest(), f"PUT {key!r}: ETag")


def list_keys(s3, prefix, page_size=1000):
    keys = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    for page in pages:
        stats.done("LIST", page)
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def delete_all(s3, keys):
    keys = list(keys)
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i:i + 1000]]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        stats.done("DELETE", resp)
        check(not resp.get("Errors"), f"DELETE: {resp.get('Errors')}")


def download(s3, key):
    out = io.BytesIO()
    s3.download_fileobj(bucket, key, out, Config=MULTIPART)
    stats.done("GET")
    return out.getvalue()


# ---------------------------------------------------------------- 1. checks

def checks(s3):
    keys = ["checks/plain.txt", "checks/dir/sub/file.bin", "checks/with space+plus.txt",
            "checks/caf\u00e9/\u20ac.txt", "checks/q?mark&amp=1"]
    keys += [f"checks/many/obj-{i:03d}" for i in range(40)]
    sizes = {key: 1 + i * 997 for i, key in enumerate(keys)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: put(s3, k, body(k, sizes[k])), keys))

        def get_check(k):
            resp, got = get_body(s3, k)
            stats.done("GET", resp)
            check(sha(got) == sha(body(k, sizes[k])), f"GET {k!r}: checksum differs")
        list(pool.map(get_check, keys))

    big = os.urandom(64 * MIB + 12345)
    s3.upload_fileobj(io.BytesIO(big), bucket, "checks/big/multipart.bin", Config=MULTIPART)
    stats.done("MULTIPART")
    head = s3.head_object(Bucket=bucket, Key="checks/big/multipart.bin")
    stats.done("HEAD", head)
    check(head["ContentLength"] == len(big), f"HEAD length {head['ContentLength']}")
    # Multipart ETags are "<md5 of the part MD5s>-<parts>" on both stores.
    check(head["ETag"].strip('"').endswith(f"-{-(-len(big) // (8 * MIB))}"),
          f"multipart ETag {head['ETag']}")
    check(sha(download(s3, "checks/big/multipart.bin")) == sha(big), "multipart object differs")

    for rng, want in [("bytes=1000-1999", big[1000:2000]),
                      (f"bytes={8 * MIB - 10}-{8 * MIB + 9}", big[8 * MIB - 10:8 * MIB + 10]),
                      ("bytes=-100", big[-100:])]:
        resp, got = get_body(s3, "checks/big/multipart.bin", Range=rng)
        stats.done("RANGE", resp)
        check(resp["ResponseMetadata"]["HTTPStatusCode"] == 206, f"{rng}: not a 206")
        check(got == want, f"{rng}: bytes differ")

    listed = list_keys(s3, "checks/many/", page_size=7)
    check(sorted(listed) == sorted(k for k in keys if k.startswith("checks/many/")),
          f"paginated listing: {listed}")

    for src, dst in [("checks/plain.txt", "checks/copy/plain.txt"),
                     ("checks/big/multipart.bin", "checks/copy/big.bin")]:
        resp = s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src})
        stats.done("COPY", resp)
    resp, got = get_body(s3, "checks/copy/plain.txt")
    stats.done("GET", resp)
    check(got == body("checks/plain.txt", sizes["checks/plain.txt"]), "copy of plain.txt differs")
    check(sha(download(s3, "checks/copy/big.bin")) == sha(big), "copy of the multipart object differs")

    delete_all(s3, list_keys(s3, "checks/"))
    left = listed_after_delete(s3, "checks/")
    check(not left, f"{len(left)} objects left after delete")


# ---------------------------------------------------------------- 2. load

objects = {}  # key -> (seed, size) of every acknowledged small object
small_keys = []  # the same keys, for readers to pick from
first_write = threading.Event()  # set once small_keys has a key
bigs = {}  # key -> SHA-256 of acknowledged multipart objects
stop = threading.Event()


def listed_after_delete(s3, prefix):
    """What LIST still shows under `prefix` once deleted: Garage's listing can lag a
    DeleteObjects for a moment (seen once in a few runs, with every node up), so
    the listing gets a few seconds to empty before what is left counts as a failure."""
    deadline = time.time() + 10
    while (left := list_keys(s3, prefix)) and time.time() < deadline:
        time.sleep(0.2)  # paces the polling
    return left


def guarded(name, fn):
    """Runs one operation; an exception is a failed operation, counted and shown."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported
        stats.failed(f"{name}: {type(e).__name__}: {e}")


def writer(wid):
    s3, rng, n = client(), random.Random(wid), 0
    while not stop.is_set():
        n += 1
        key, size = f"load/w{wid}/{n:06d}", rng.choice(SIZES)

        def op():
            put(s3, key, body(key, size))
            objects[key] = (key, size)
            small_keys.append(key)
            first_write.set()
        guarded(f"PUT {key}", op)
        if n % 10 == 0 and key in objects:
            copy = f"load/w{wid}/copy-{n:06d}"

            def cp():
                resp = s3.copy_object(Bucket=bucket, Key=copy,
                                      CopySource={"Bucket": bucket, "Key": key})
                stats.done("COPY", resp)
                objects[copy] = objects[key]
                small_keys.append(copy)
            guarded(f"COPY {key}", cp)


def reader(rid):
    s3, rng = client(), random.Random(100 + rid)
    while not first_write.wait(1):
        if stop.is_set():
            return
    while not stop.is_set():
        key = small_keys[rng.randrange(len(small_keys))]
        seed, size = objects[key]
        r = rng.random()
        if r < 0.1:
            def lst():
                resp = s3.list_objects_v2(Bucket=bucket, Prefix="load/", MaxKeys=100)
                stats.done("LIST", resp)
            guarded("LIST", lst)
        elif r < 0.3:
            a = rng.randrange(size)
            b = min(size - 1, a + rng.randrange(64 << 10))

            def ranged():
                resp, got = get_body(s3, key, Range=f"bytes={a}-{b}")
                stats.done("RANGE", resp)
                check(got == body(seed, size)[a:b + 1], f"GET {key} bytes={a}-{b}: bytes differ")
            guarded(f"RANGE {key}", ranged)
        else:
            def full():
                resp, got = get_body(s3, key)
                stats.done("GET", resp)
                check(sha(got) == sha(body(seed, size)), f"GET {key}: body differs")
            guarded(f"GET {key}", full)


def multipart_uploader():
    s3, n = client(), 0
    while not stop.is_set():
        n += 1
        key, big = f"load/big/{n:03d}", os.urandom(64 * MIB)

        def op():
            s3.upload_fileobj(io.BytesIO(big), bucket, key, Config=MULTIPART)
            stats.done("MULTIPART")
            bigs[key] = sha(big)
            check(sha(download(s3, key)) == bigs[key], f"multipart {key}: differs")
        guarded(f"MULTIPART {key}", op)
        # Only the latest two stay: the store holds three copies of each.
        for old in sorted(bigs)[:-2]:
            def rm():
                resp = s3.delete_object(Bucket=bucket, Key=old)
                stats.done("DELETE", resp)
                del bigs[old]
            guarded(f"DELETE {old}", rm)


def load():
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    threads.append(threading.Thread(target=multipart_uploader))

    def control():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()
    threading.Thread(target=control, daemon=True).start()
    for t in threads:
        t.start()
    print("load running", flush=True)
    while not stop.wait(0.5):
        print(f"progress ops={stats.total()} failed={len(stats.failures)}", flush=True)
    for t in threads:
        t.join()


# ---------------------------------------------------------------- 3. verify

def verify(s3):
    def one(key):
        seed, size = objects[key]
        resp, got = get_body(s3, key)
        stats.done("GET", resp)
        check(sha(got) == sha(body(seed, size)), f"read-back {key}: differs")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(one, k) for k in objects]:
            guarded("read-back", f.result)
    for key, digest in bigs.items():
        check(sha(download(s3, key)) == digest, f"read-back {key}: differs")
    listed = list_keys(s3, "load/")
    want = set(objects) | set(bigs)
    check(set(listed) == want and len(listed) == len(want),
          f"LIST shows {len(listed)} objects, {len(want)} were acknowledged")
    delete_all(s3, listed)
    check(not listed_after_delete(s3, "load/"), "objects left after delete")


def main():
    s3 = client()
    guarded("checks", lambda: checks(s3))
    print("checks done", flush=True)
    load()
    guarded("verify", lambda: verify(s3))
    ops = ", ".join(f"{n} {op}" for op, n in sorted(stats.ops.items()))
    print(f"operations: {ops}")
    print(f"verified: {len(objects)} objects and {len(bigs)} multipart objects read back identical")
    print(f"retries: {stats.retries} by boto3, {stats.rereads} re-reads of a body cut short")
    print(f"failed: {len(stats.failures)}")
    if stats.failures:
        for f in stats.failures[:20]:
            print("FAIL:", f)
        return 1
    print("s3 workload ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
