//! The S3 shared cache against a real S3 origin: boto3 through sidekick to a Garage
//! cluster, whose second bucket (with a key allowed on it alone) is the cache store.
//! Each test proves one rule of the cache with real signatures, ETags and ranges.

use serde_json::json;

use crate::common::boto::{Boto, S3Answer, S3Key};
use crate::common::cache_store::CacheStore;
use crate::common::garage::{Garage, REGION};
use crate::common::*;

const BLOCK: usize = 64 << 10;
/// Three whole blocks and a partial one.
const SIZE: usize = 3 * BLOCK + 1000;
const NODES: usize = 1;

/// A Garage origin, its cache bucket, boto3, and sidekick in front of the origin
/// with the cache on.
struct Real {
    g: Garage,
    store: CacheStore,
    boto: Boto,
    sk: Sidekick,
    /// The origin's key, signing for sidekick.
    via: S3Key,
    /// The origin's key, signing for Garage node 0 directly.
    direct: S3Key,
}

impl Real {
    fn start() -> Real {
        let boto = Boto::start();
        let g = Garage::start(NODES);
        let store = CacheStore::in_garage(&g, "sidekick-cache");
        let sk = sidekick_for(&g, &store);
        let direct = S3Key {
            endpoint: g.endpoint(0),
            access: g.access_key.clone(),
            secret: g.secret_key.clone(),
            region: REGION.into(),
        };
        let via = direct.at(&format!("http://{}", sk.addr));
        Real {
            g,
            store,
            boto,
            sk,
            via,
            direct,
        }
    }

    /// PUTs `body` at `name` on the origin (directly); its ETag.
    fn put(&self, name: &str, body: &[u8]) -> String {
        self.boto.put(&self.direct, &self.g.bucket, name, body)
    }

    fn get(&self, name: &str, args: serde_json::Value) -> S3Answer {
        self.boto.get(&self.via, &self.g.bucket, name, args)
    }
}

fn sidekick_for(g: &Garage, store: &CacheStore) -> Sidekick {
    let port = g.admin_port.to_string();
    let site = g.site();
    let sk = Sidekick::start_cached(
        store,
        &[
            "--health-port",
            &port,
            "--health-path",
            "/health",
            "--health-duration",
            "500ms",
            &site,
        ],
    );
    sk.wait_up(g.len());
    sk
}

/// The answer is a whole object with exactly `body`, served as `x_cache`.
fn assert_whole(a: &S3Answer, body: &[u8], x_cache: &str, what: &str) {
    assert_eq!(a.status, 200, "{what}: {a:?}");
    assert_eq!(a.len, body.len() as u64, "{what}: length");
    assert_eq!(a.sha256, sha256(body), "{what}: not the object's bytes");
    assert_eq!(a.x_cache(), Some(x_cache), "{what}: X-Cache in {:?}", a.headers);
}

/// What the cache relies on in its origin, checked on Garage directly: a 304 that
/// names the ETag, also with a Range and on a presigned URL (If-None-Match is not
/// signed), and ranges answered as RFC 9110 says.
#[test]
fn garage_answers_the_conditional_gets_the_cache_relies_on() {
    let boto = Boto::start();
    let g = Garage::start(1);
    let key = S3Key {
        endpoint: g.endpoint(0),
        access: g.access_key.clone(),
        secret: g.secret_key.clone(),
        region: REGION.into(),
    };
    let body = bytes(SIZE, 1);
    let etag = boto.put(&key, &g.bucket, "facts", &body);
    let get = |args| boto.get(&key, &g.bucket, "facts", args);

    let a = get(json!({"if_none_match": etag}));
    eprintln!("If-None-Match (match): {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 304);
    assert_eq!(a.header("etag"), Some(etag.as_str()), "the 304 names the ETag");

    let a = get(json!({"if_none_match": etag, "range": "bytes=100-199"}));
    eprintln!("If-None-Match (match) + Range: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 304, "If-None-Match is honoured with a Range");

    let a = get(json!({"if_none_match": "\"0000\"", "range": "bytes=100-199"}));
    eprintln!("If-None-Match (other) + Range: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 206);
    assert_eq!(a.header("content-range"), Some(&*format!("bytes 100-199/{SIZE}")));
    assert_eq!(a.sha256, sha256(&body[100..200]));

    let a = get(json!({"range": format!("bytes={SIZE}-")}));
    eprintln!("unsatisfiable Range: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 416);
    assert_eq!(a.header("content-range"), Some(&*format!("bytes */{SIZE}")));

    let a = get(json!({"if_none_match": etag, "range": format!("bytes={SIZE}-")}));
    eprintln!("If-None-Match (match) + unsatisfiable Range: {} {:?}", a.status, a.headers);
    // So a cache that revalidates an unsatisfiable range must answer the 416 itself.
    assert_eq!(a.status, 304, "If-None-Match is evaluated before the range");

    let url = boto.presign(&key, &g.bucket, "facts");
    let a = boto.fetch(&url, json!({}));
    assert_eq!(a.status, 200, "presigned GET: {a:?}");
    assert_eq!(a.sha256, sha256(&body));
    let a = boto.fetch(&url, json!({"If-None-Match": etag}));
    eprintln!("presigned + If-None-Match: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 304, "a presigned GET with If-None-Match added");
    assert_eq!(a.header("etag"), Some(etag.as_str()));

    let a = get(json!({"range": "bytes=0-1,5-6"}));
    eprintln!("two ranges: {} {:?} len {}", a.status, a.headers, a.len);
    assert_eq!((a.status, a.len), (200, SIZE as u64), "several ranges: the whole object");
}
