"""A real S3 workload through sidekick with boto3 (SigV4 verified by the servers).

Usage: s3_workload.py ENDPOINT ACCESS_KEY SECRET_KEY
Exits non-zero with a message on the first mismatch.
"""
import hashlib
import io
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access_key, secret_key = sys.argv[1:4]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access_key,
    aws_secret_access_key=secret_key,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
bucket = "sidekick-test"


def sha(data):
    return hashlib.sha256(data).hexdigest()


s3.create_bucket(Bucket=bucket)
objects = {}
keys = ["plain.txt", "dir/sub/file.bin", "with space+plus.txt", "caf\u00e9/\u20ac.txt", "q?mark&amp=1"]
keys += [f"many/obj-{i:03d}" for i in range(40)]
for i, key in enumerate(keys):
    data = os.urandom(1 + i * 997)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    objects[key] = sha(data)

for key, digest in objects.items():
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert sha(got) == digest, f"GET {key!r}: checksum differs"

# Multipart upload of 24 MiB in 5 MiB parts. Parts go up one at a time: s3s-fs names
# its temporary files with a per-process counter, so two nodes sharing a directory
# that write at the same moment would collide. Downloads run in parallel.
big = os.urandom(24 << 20)
upload = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=1)
config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=4)
s3.upload_fileobj(io.BytesIO(big), bucket, "big/multipart.bin", Config=upload)
head = s3.head_object(Bucket=bucket, Key="big/multipart.bin")
assert head["ContentLength"] == len(big), f"HEAD length {head['ContentLength']}"
out = io.BytesIO()
s3.download_fileobj(bucket, "big/multipart.bin", out, Config=config)
assert sha(out.getvalue()) == sha(big), "multipart object differs"

# Ranges.
part = s3.get_object(Bucket=bucket, Key="big/multipart.bin", Range="bytes=1000-1999")
assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
assert part["Body"].read() == big[1000:2000], "range differs"

# Listing, paginated.
listed = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/", PaginationConfig={"PageSize": 7}):
    listed += [o["Key"] for o in page.get("Contents", [])]
assert sorted(listed) == sorted(k for k in keys if k.startswith("many/")), f"listing: {listed}"

# Deletes.
for key in list(objects) + ["big/multipart.bin"]:
    s3.delete_object(Bucket=bucket, Key=key)
left = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
assert left == 0, f"{left} objects left after delete"
s3.delete_bucket(Bucket=bucket)
print(f"s3 workload ok: {len(objects) + 1} objects, multipart {len(big)} bytes")
