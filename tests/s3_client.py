"""A boto3 client driven over stdin/stdout, for the cache tests.

Usage: s3_client.py   (then one JSON request per line on stdin, one JSON answer per
line on stdout)

Every request names its client: {"endpoint", "access", "secret", "region"} plus an
"op" and its arguments. Answers carry the HTTP status, the response headers
(names lower-cased) and the body's length and SHA-256 (or the body itself, hex,
for "get_raw"; "put" takes its body in hex too); a refused call (ClientError) is
an answer too, with its error code, and so is a body cut short ("cut").

ops: put (with an optional content_type and metadata), copy (onto itself or from
another key, replacing the metadata), get, head, delete, list, get_raw, presign,
fetch (a plain HTTP GET of a URL, e.g. a presigned one, with extra headers).
"""
import hashlib
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.exceptions
from botocore.config import Config

clients = {}
# Headers added to the next request after it is signed (so unsigned, as a proxy or
# an unusual client would add them).
extra = {}


def add_extra(request, **_):
    for name, value in extra.items():
        request.headers[name] = value


def client(req):
    spec = (req["endpoint"], req["access"], req["secret"], req.get("region", "us-east-1"))
    if spec not in clients:
        c = boto3.client(
            "s3",
            endpoint_url=spec[0],
            aws_access_key_id=spec[1],
            aws_secret_access_key=spec[2],
            region_name=spec[3],
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        c.meta.events.register("before-send.s3.*", add_extra)
        clients[spec] = c
    return clients[spec]


def described(meta, body=b""):
    return {
        "status": meta["HTTPStatusCode"],
        "headers": {k.lower(): v for k, v in meta.get("HTTPHeaders", {}).items()},
        "len": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def refused(e):
    out = described(e.response["ResponseMetadata"])
    out["code"] = e.response.get("Error", {}).get("Code")
    return out


def get_args(req):
    args = {"Bucket": req["bucket"], "Key": req["key"]}
    for field, name in [
        ("range", "Range"),
        ("if_none_match", "IfNoneMatch"),
        ("if_match", "IfMatch"),
        ("version_id", "VersionId"),
        ("part_number", "PartNumber"),
        ("response_content_type", "ResponseContentType"),
    ]:
        if field in req:
            args[name] = req[field]
    if req.get("sse_c"):
        args["SSECustomerAlgorithm"] = "AES256"
        args["SSECustomerKey"] = "k" * 32
    return args


def run(req):
    op = req["op"]
    if op == "fetch":
        r = urllib.request.Request(req["url"], headers=req.get("headers", {}))
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                body = resp.read()
                status, headers = resp.status, resp.headers
        except urllib.error.HTTPError as e:
            body, status, headers = e.read(), e.code, e.headers
        return {
            "status": status,
            "headers": {k.lower(): v for k, v in headers.items()},
            "len": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    s3 = client(req)
    extra.clear()
    extra.update(req.get("headers", {}))
    try:
        if op == "put":
            body = bytes.fromhex(req["body"])
            args = {"Bucket": req["bucket"], "Key": req["key"], "Body": body}
            if "content_type" in req:
                args["ContentType"] = req["content_type"]
            if "metadata" in req:
                args["Metadata"] = req["metadata"]
            resp = s3.put_object(**args)
            out = described(resp["ResponseMetadata"])
            out["etag"] = resp["ETag"]
            return out
        if op == "copy":
            args = {
                "Bucket": req["bucket"],
                "Key": req["key"],
                "CopySource": {"Bucket": req["bucket"], "Key": req.get("source", req["key"])},
                "MetadataDirective": "REPLACE",
                "Metadata": req.get("metadata", {}),
            }
            if "content_type" in req:
                args["ContentType"] = req["content_type"]
            resp = s3.copy_object(**args)
            out = described(resp["ResponseMetadata"])
            out["etag"] = resp["CopyObjectResult"]["ETag"]
            return out
        if op == "get":
            resp = s3.get_object(**get_args(req))
            try:
                return described(resp["ResponseMetadata"], resp["Body"].read())
            except (
                botocore.exceptions.ResponseStreamingError,
                botocore.exceptions.IncompleteReadError,
            ) as e:
                # The body was cut short: an answer too (the test judges it).
                out = described(resp["ResponseMetadata"])
                out["cut"] = str(e)
                return out
        if op == "get_raw":
            resp = s3.get_object(Bucket=req["bucket"], Key=req["key"])
            out = described(resp["ResponseMetadata"])
            out["body"] = resp["Body"].read().hex()
            return out
        if op == "head":
            resp = s3.head_object(Bucket=req["bucket"], Key=req["key"])
            return described(resp["ResponseMetadata"])
        if op == "delete":
            resp = s3.delete_object(Bucket=req["bucket"], Key=req["key"])
            return described(resp["ResponseMetadata"])
        if op == "list":
            keys = []
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=req["bucket"], Prefix=req.get("prefix", "")
            )
            for page in pages:
                keys += [{"key": o["Key"], "size": o["Size"]} for o in page.get("Contents", [])]
            return {"status": 200, "keys": keys}
        if op == "presign":
            url = s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": req["bucket"], "Key": req["key"]},
                ExpiresIn=600,
            )
            return {"status": 200, "url": url}
    except botocore.exceptions.ClientError as e:
        return refused(e)
    finally:
        extra.clear()
    return {"status": 0, "error": f"unknown op {op}"}


for line in sys.stdin:
    try:
        answer = run(json.loads(line))
    except Exception as e:  # the test reads it, and fails with it
        answer = {"status": 0, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
