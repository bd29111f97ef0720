//! Requests to the cache store: presigned with sidekick's own credentials (SigV4 by
//! `rusty-s3`, no client credential ever goes there), sent through the worker's
//! `upstream` client to a node picked from the cache store's pool, whose failures
//! take it out of that pool like a backend.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::config::cache_flags::CacheConfig;
use crate::config::Balance;
use crate::observe::cache_stats::STATS;
use crate::pool::backend::{Backend, InFlight};
use crate::pool::messages::Failure;
use crate::pool::view::SharedView;
use crate::pool::Pool;
use crate::upstream::request::Body;
use crate::upstream::{Reply, ResponseBody, Upstream};

/// How long a presigned request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// A cache store slower than this for a lookup is no help: the origin is asked alone.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Slowest a node may send a body, in bytes per second, once its head came: a node
/// dripping a block would otherwise hold a reader (and its client) for hours.
const MIN_RATE: u64 = 4 << 20;

/// How long a body of at most `max` bytes may take to arrive.
fn body_deadline(max: usize) -> Duration {
    LOOKUP_TIMEOUT + Duration::from_millis((max as u64).saturating_mul(1000) / MIN_RATE)
}

/// Why a body was not read.
enum Unread {
    TooLarge,
    Broken(PayloadError),
}

/// A body whole, at most `max` bytes, with room for `announced` of them reserved
/// (the caller bounded it by `max`).
async fn read_body(
    mut stream: ResponseBody,
    announced: usize,
    max: usize,
) -> Result<Bytes, Unread> {
    if let Some(whole) = stream.whole(max).await {
        return whole.map_err(Unread::Broken);
    }
    let mut out = BytesMut::with_capacity(announced.min(max));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Unread::Broken)?;
        if out.len() + chunk.len() > max {
            return Err(Unread::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

pub struct Store {
    pub view: SharedView,
    pub pool: Addr<Pool>,
    credentials: Credentials,
    bucket: String,
    region: String,
}

/// Why a request to the store did not give what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// No node is up.
    Down,
    /// The node answered this status.
    Status(StatusCode),
    /// The exchange failed (the node is reported to its pool).
    Failed(String),
    /// The object is larger than any sidekick writes under that name (at most this
    /// many bytes): not read, and the node not blamed (it serves what it holds).
    TooLarge(String, usize),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Down => f.write_str("no cache node is up"),
            StoreError::Status(s) => write!(f, "the cache store answered {s}"),
            StoreError::Failed(e) => f.write_str(e),
            StoreError::TooLarge(name, max) => write!(f, "{name} is larger than {max} bytes"),
        }
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Head,
    Put,
    /// ListObjectsV2 of the keys under a prefix.
    List,
}

/// A condition on a PUT (RFC 9110 §13.1), honoured by AWS S3 and MinIO; some stores
/// (Garage 2.5) ignore it and overwrite.
#[derive(Clone, Copy, Debug)]
pub enum Condition<'a> {
    /// `If-None-Match: *`: only if no object has the name.
    Absent,
    /// `If-Match: <etag>`: only if the object is still this version.
    Matches(&'a str),
}

/// What a conditional PUT did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written; the new version's ETag, when the store sent one.
    Done(Option<String>),
    /// `412`: the condition did not hold, nothing was written.
    Refused,
}

/// One answer of the store: its status, ETag and body.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

/// A 2xx answer, `None` for a 404, an error for any other status.
fn found(answer: Answer) -> Result<Option<Answer>, StoreError> {
    match answer.status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(Some(answer)),
        s => Err(STATS.error(StoreError::Status(s))),
    }
}

/// Writes the store answers 503 are asked again this often, this far apart (more
/// each time).
const BUSY_RETRIES: u32 = 2;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Largest listing read back: one page of keys.
const MAX_LIST: usize = 1 << 20;

impl Store {
    pub fn new(cfg: &CacheConfig, view: SharedView, pool: Addr<Pool>) -> Self {
        Store {
            view,
            pool,
            credentials: Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone()),
            bucket: cfg.bucket.clone(),
            region: cfg.region.clone(),
        }
    }

    pub fn up(&self) -> bool {
        self.view.load().any_up()
    }

    /// The object `name`, or `None` when the store does not have it. Bodies over
    /// `max` bytes are an error (nothing sidekick wrote is that large).
    pub async fn get(
        &self,
        up: &Upstream,
        name: &str,
        max: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_tagged(up, name, max).await?.map(|(body, _)| body))
    }

    /// The object `name` and its ETag (as the store sends it), or `None`.
    pub async fn get_tagged(
        &self,
        up: &Upstream,
        name: &str,
        max: usize,
    ) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        let answer = self.request(up, Verb::Get, name, None, None, max).await?;
        Ok(found(answer)?.map(|a| (a.body, a.etag)))
    }

    /// Whether the store has the object `name`.
    pub async fn has(&self, up: &Upstream, name: &str) -> Result<bool, StoreError> {
        let answer = self.request(up, Verb::Head, name, None, None, 0).await?;
        Ok(found(answer)?.is_some())
    }

    /// Writes `name`; a store that answers 503 (busy: S3's `SlowDown`, Garage's
    /// locked database) is asked again, `BUSY_RETRIES` times, before it fails: a
    /// moment's load should not cost a whole fill.
    pub async fn put(&self, up: &Upstream, name: &str, data: Bytes) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            let answer = self
                .request(up, Verb::Put, name, Some(data.clone()), None, 0)
                .await?;
            match found(answer) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => return Err(StoreError::Status(StatusCode::NOT_FOUND)),
                Err(StoreError::Status(StatusCode::SERVICE_UNAVAILABLE))
                    if tries < BUSY_RETRIES =>
                {
                    tries += 1;
                    actix_rt::time::sleep(BUSY_PAUSE * tries).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A PUT under `condition`: `Refused` when the store answered 412. A store that
    /// ignores the condition writes (`cache::claim` finds out at start).
    pub async fn put_if(
        &self,
        up: &Upstream,
        name: &str,
        data: Bytes,
        condition: Condition<'_>,
    ) -> Result<Written, StoreError> {
        let answer = self
            .request(up, Verb::Put, name, Some(data), Some(condition), 0)
            .await?;
        if answer.status == StatusCode::PRECONDITION_FAILED {
            return Ok(Written::Refused);
        }
        match found(answer)? {
            Some(answer) => Ok(Written::Done(answer.etag)),
            None => Err(StoreError::Status(StatusCode::NOT_FOUND)),
        }
    }

    /// The keys under `prefix` (the first page of them: at most 1000).
    pub async fn list(&self, up: &Upstream, prefix: &str) -> Result<Vec<String>, StoreError> {
        let answer = self
            .request(up, Verb::List, prefix, None, None, MAX_LIST)
            .await?;
        let xml = match found(answer)? {
            Some(answer) => answer.body,
            None => return Err(StoreError::Status(StatusCode::NOT_FOUND)),
        };
        let xml = String::from_utf8_lossy(&xml);
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect())
    }

    async fn request(
        &self,
        up: &Upstream,
        verb: Verb,
        name: &str,
        data: Option<Bytes>,
        condition: Option<Condition<'_>>,
        max: usize,
    ) -> Result<Answer, StoreError> {
        let Some(node) = self.view.load().pick(Balance::Least, &[]) else {
            return Err(STATS.error(StoreError::Down));
        };
        STATS.store_requests.fetch_add(1, Relaxed);
        let guard = InFlight::new(node);
        let node = guard.backend();
        let length = data.as_ref().map_or(0, Bytes::len);
        let head = self.signed_head(node, verb, name, length, condition)?;
        let mut body = match data {
            Some(bytes) => Body::Buffered {
                bytes,
                chunked: false,
            },
            None => Body::None,
        };
        let head_request = matches!(verb, Verb::Head);
        let exchange = up.exchange(node, |_| &head[..], &mut body, head_request, true);
        // A read's answer must begin within the lookup's deadline: a node that takes
        // longer is no help, and the origin's answer must not wait on it. A write
        // keeps the backends' response timeout.
        let sent = match verb {
            Verb::Put => Ok(exchange.await),
            _ => actix_rt::time::timeout(LOOKUP_TIMEOUT, exchange).await,
        };
        let res = match sent {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return Err(STATS.error(self.failed(node, e.to_string()))),
            Err(_) => {
                let why = format!("{name}: no answer within {LOOKUP_TIMEOUT:?}");
                return Err(STATS.error(StoreError::Failed(why)));
            }
        };
        let status = res.head.status;
        let etag = res
            .head
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            // A 404 or a 412 is an answer; the connection may carry no body to read.
            return Ok(Answer {
                status,
                etag,
                body: Bytes::new(),
            });
        }
        // The length a node announces is only a claim: what the caller expects bounds
        // it, and memory is reserved for no more than that.
        let too_large = || STATS.error(StoreError::TooLarge(name.to_string(), max));
        let announced = match head_request {
            true => None,
            false => res.head.length,
        };
        if announced.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let whole = match res.body {
            Reply::Empty => Bytes::new(),
            Reply::Whole(bytes) if bytes.len() > max => return Err(too_large()),
            Reply::Whole(bytes) => bytes,
            Reply::Stream(stream) => {
                let read = read_body(stream, announced.unwrap_or(0) as usize, max);
                match actix_rt::time::timeout(body_deadline(max), read).await {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(Unread::TooLarge)) => return Err(too_large()),
                    Ok(Err(Unread::Broken(e))) => {
                        return Err(STATS.error(self.failed(node, e.to_string())))
                    }
                    Err(_) => {
                        let slow = format!("{name} came slower than {MIN_RATE} bytes/s");
                        return Err(STATS.error(self.failed(node, slow)));
                    }
                }
            }
        };
        Ok(Answer {
            status,
            etag,
            body: whole,
        })
    }

    /// The node failed an exchange: its pool takes it out (and counts the failure).
    fn failed(&self, node: &Backend, error: String) -> StoreError {
        self.pool.do_send(Failure {
            id: node.id,
            error: error.clone(),
        });
        StoreError::Failed(format!("{}: {error}", node.name))
    }

    /// The request head, presigned for this node (the signature covers its host).
    fn signed_head(
        &self,
        node: &Arc<Backend>,
        verb: Verb,
        name: &str,
        length: usize,
        condition: Option<Condition<'_>>,
    ) -> Result<Vec<u8>, StoreError> {
        let endpoint = format!("{}://{}", node.endpoint.scheme, node.endpoint.authority);
        let failed = |e: &dyn std::fmt::Display| StoreError::Failed(format!("{endpoint}: {e}"));
        let url = endpoint.parse().map_err(|e| failed(&e))?;
        let bucket = Bucket::new(
            url,
            UrlStyle::Path,
            self.bucket.clone(),
            self.region.clone(),
        )
        .map_err(|e| failed(&e))?;
        let creds = Some(&self.credentials);
        let (method, url) = match verb {
            Verb::Get => ("GET", bucket.get_object(creds, name).sign(SIGNED_FOR)),
            Verb::Head => ("HEAD", bucket.head_object(creds, name).sign(SIGNED_FOR)),
            Verb::Put => ("PUT", bucket.put_object(creds, name).sign(SIGNED_FOR)),
            // The bucket's own URL with the listing's query (rusty-s3 builds
            // ListObjectsV2 only with features sidekick does not take).
            Verb::List => {
                let mut list = bucket.get_object(creds, "");
                list.query_mut().insert("list-type", "2");
                list.query_mut().insert("prefix", name.to_string());
                ("GET", list.sign(SIGNED_FOR))
            }
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        // The host as signed: without a default port.
        let host = url.host_str().unwrap_or_default();
        let mut head = match url.port() {
            Some(port) => format!("{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\n"),
            None => format!("{method} {target} HTTP/1.1\r\nhost: {host}\r\n"),
        };
        if matches!(verb, Verb::Put) {
            head.push_str(&format!("content-length: {length}\r\n"));
        }
        // Not signed: a presigned URL signs only the host.
        match condition {
            Some(Condition::Absent) => head.push_str("if-none-match: *\r\n"),
            Some(Condition::Matches(etag)) => head.push_str(&format!("if-match: {etag}\r\n")),
            None => {}
        }
        head.push_str("\r\n");
        Ok(head.into_bytes())
    }
}
