"""What a cache in front of S3 relies on, checked with boto3 through sidekick.

Usage: s3_conditional.py ENDPOINT ACCESS_KEY SECRET_KEY REGION BUCKET

- a GET with If-None-Match naming the object's ETag is answered 304 with no body;
  another ETag gets the object (200), If-Match with another ETag gets 412;
- a request signed with a wrong secret key is refused with 403.

Prints one `ok` line per check and the error codes seen; exits 1 on the first
mismatch.
"""
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, access_key, secret_key, region, bucket = sys.argv[1:6]


def client(secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def refused(call):
    """The HTTP status and S3 error code of a call that must fail."""
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"].get("Code")
    sys.exit(f"FAIL: {call.__name__} succeeded")


s3 = client(secret_key)
data = b"cached body\n" * 100
etag = s3.put_object(Bucket=bucket, Key="conditional/obj", Body=data)["ETag"]

status, code = refused(lambda: s3.get_object(Bucket=bucket, Key="conditional/obj", IfNoneMatch=etag))
assert status == 304, f"If-None-Match {etag}: {status} {code}"
print(f"ok: If-None-Match with the ETag -> {status}")

resp = s3.get_object(Bucket=bucket, Key="conditional/obj", IfNoneMatch='"0000"')
assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200 and resp["Body"].read() == data
assert resp["ETag"] == etag, f"ETag {resp['ETag']} != {etag}"
print("ok: If-None-Match with another ETag -> 200, same body and ETag")

status, code = refused(lambda: s3.get_object(Bucket=bucket, Key="conditional/obj", IfMatch='"0000"'))
assert status == 412, f"If-Match another ETag: {status} {code}"
print(f"ok: If-Match with another ETag -> {status} {code}")

wrong = client("0" * len(secret_key))
status, code = refused(lambda: wrong.get_object(Bucket=bucket, Key="conditional/obj"))
assert status == 403, f"wrong secret, GET: {status} {code}"
print(f"ok: wrong secret, GET -> {status} {code}")
status, code = refused(lambda: wrong.put_object(Bucket=bucket, Key="conditional/other", Body=b"x"))
assert status == 403, f"wrong secret, PUT: {status} {code}"
head, _ = refused(lambda: s3.head_object(Bucket=bucket, Key="conditional/other"))
assert head == 404, f"the refused PUT stored something: HEAD {head}"
print(f"ok: wrong secret, PUT -> {status} {code}, nothing stored")

s3.delete_object(Bucket=bucket, Key="conditional/obj")
print("s3 conditional ok")
