//! boto3 as a long-running helper process (`tests/s3_client.py`): one JSON request
//! per line, one answer per line, so a test makes many S3 calls without paying
//! for a Python start each time. The process dies with the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{hex, require_s3};

/// Where and as whom a client signs.
#[derive(Clone, Debug)]
pub struct S3Key {
    pub endpoint: String,
    pub access: String,
    pub secret: String,
    pub region: String,
}

impl S3Key {
    /// The same client with another (wrong) secret.
    pub fn with_secret(&self, secret: &str) -> S3Key {
        S3Key {
            secret: secret.into(),
            ..self.clone()
        }
    }

    /// The same credentials, sent to `endpoint`.
    pub fn at(&self, endpoint: &str) -> S3Key {
        S3Key {
            endpoint: endpoint.into(),
            ..self.clone()
        }
    }
}

/// One S3 answer: status, headers (names lower-cased), body length and hash.
#[derive(Clone, Debug)]
pub struct S3Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub len: u64,
    pub sha256: String,
    /// The S3 error code of a refused call.
    pub code: Option<String>,
    /// Why the body ended before its length, when it did.
    pub cut: Option<String>,
    pub raw: Value,
}

impl S3Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn x_cache(&self) -> Option<&str> {
        self.header("x-cache")
    }

    fn from(raw: Value) -> S3Answer {
        let headers = raw["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        S3Answer {
            status: raw["status"].as_u64().unwrap_or(0) as u16,
            headers,
            len: raw["len"].as_u64().unwrap_or(0),
            sha256: raw["sha256"].as_str().unwrap_or("").to_string(),
            code: raw["code"].as_str().map(String::from),
            cut: raw["cut"].as_str().map(String::from),
            raw,
        }
    }
}

struct Io {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub struct Boto {
    child: Child,
    io: Mutex<Io>,
}

impl Boto {
    pub fn start() -> Boto {
        require_s3();
        let mut child = Command::new("python3")
            .arg(format!("{}/tests/s3_client.py", env!("CARGO_MANIFEST_DIR")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3");
        let io = Io {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
        };
        Boto {
            child,
            io: Mutex::new(io),
        }
    }

    /// Sends one request as `key`; the answer, which must not be a script error.
    pub fn call(&self, key: &S3Key, op: &str, mut args: Value) -> Value {
        args["op"] = json!(op);
        args["endpoint"] = json!(key.endpoint);
        args["access"] = json!(key.access);
        args["secret"] = json!(key.secret);
        args["region"] = json!(key.region);
        let mut io = self.io.lock().unwrap();
        writeln!(io.stdin, "{args}").expect("write to s3_client.py");
        io.stdin.flush().unwrap();
        let mut line = String::new();
        io.stdout.read_line(&mut line).expect("read s3_client.py");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("s3_client.py answered {line:?}: {e}"));
        assert!(
            answer.get("error").is_none(),
            "s3_client.py {op}: {}",
            answer["error"]
        );
        answer
    }

    /// PUTs `body`; its ETag.
    pub fn put(&self, key: &S3Key, bucket: &str, name: &str, body: &[u8]) -> String {
        let a = self.call(
            key,
            "put",
            json!({"bucket": bucket, "key": name, "body": hex(body)}),
        );
        assert_eq!(a["status"], 200, "PUT {bucket}/{name}: {a}");
        a["etag"].as_str().unwrap().to_string()
    }

    /// PUTs `body` with a Content-Type and `x-amz-meta-*` (`metadata`, names
    /// without the prefix); its ETag.
    pub fn put_with(
        &self,
        key: &S3Key,
        bucket: &str,
        name: &str,
        body: &[u8],
        content_type: &str,
        metadata: Value,
    ) -> String {
        let a = self.call(
            key,
            "put",
            json!({"bucket": bucket, "key": name, "body": hex(body),
                   "content_type": content_type, "metadata": metadata}),
        );
        assert_eq!(a["status"], 200, "PUT {bucket}/{name}: {a}");
        a["etag"].as_str().unwrap().to_string()
    }

    /// CopyObject of `name` onto itself with `MetadataDirective=REPLACE`; its ETag.
    pub fn copy_replace(
        &self,
        key: &S3Key,
        bucket: &str,
        name: &str,
        content_type: &str,
        metadata: Value,
    ) -> String {
        let a = self.call(
            key,
            "copy",
            json!({"bucket": bucket, "key": name, "content_type": content_type,
                   "metadata": metadata}),
        );
        assert_eq!(a["status"], 200, "COPY {bucket}/{name}: {a}");
        a["etag"].as_str().unwrap().to_string()
    }

    /// GET with `args` (range, if_none_match, if_match, headers, sse_c, version_id,
    /// part_number, response_content_type).
    pub fn get(&self, key: &S3Key, bucket: &str, name: &str, mut args: Value) -> S3Answer {
        args["bucket"] = json!(bucket);
        args["key"] = json!(name);
        S3Answer::from(self.call(key, "get", args))
    }

    pub fn head(&self, key: &S3Key, bucket: &str, name: &str) -> S3Answer {
        S3Answer::from(self.call(key, "head", json!({"bucket": bucket, "key": name})))
    }

    pub fn delete(&self, key: &S3Key, bucket: &str, name: &str) {
        let a = self.call(key, "delete", json!({"bucket": bucket, "key": name}));
        assert_eq!(a["status"], 204, "DELETE {bucket}/{name}: {a}");
    }

    /// (key, size) of every object under `prefix`.
    pub fn list(&self, key: &S3Key, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let a = self.call(key, "list", json!({"bucket": bucket, "prefix": prefix}));
        assert_eq!(a["status"], 200, "LIST {bucket}/{prefix}: {a}");
        a["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["key"].as_str().unwrap().to_string(),
                    o["size"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// The whole body of an object.
    pub fn get_raw(&self, key: &S3Key, bucket: &str, name: &str) -> Vec<u8> {
        let a = self.call(key, "get_raw", json!({"bucket": bucket, "key": name}));
        assert_eq!(a["status"], 200, "GET {bucket}/{name}: {a}");
        unhex(a["body"].as_str().unwrap())
    }

    /// A presigned GET URL (valid ten minutes) for the object.
    pub fn presign(&self, key: &S3Key, bucket: &str, name: &str) -> String {
        let a = self.call(key, "presign", json!({"bucket": bucket, "key": name}));
        a["url"].as_str().unwrap().to_string()
    }

    /// A plain HTTP GET of `url` with `headers` added.
    pub fn fetch(&self, url: &str, headers: Value) -> S3Answer {
        let key = S3Key {
            endpoint: String::new(),
            access: String::new(),
            secret: String::new(),
            region: String::new(),
        };
        S3Answer::from(self.call(&key, "fetch", json!({"url": url, "headers": headers})))
    }
}

impl Drop for Boto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}
