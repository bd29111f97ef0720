//! The `--help` text around the flags: what sidekick is, what a SITE is, examples.

pub const ABOUT: &str = "High-performance sidecar HTTP load balancer.

Listens on one address and spreads the application's HTTP traffic over the \
endpoints of the first SITE that has a backend up, avoiding servers that fail \
their readiness check or fail requests. When every backend of SITE1 is down, \
SITE2 serves, and so on.";

pub const AFTER: &str = "SITE is a comma-separated list of endpoints, each with optional \
ellipses: http://minio{1...4}:9000,http://minio{5...8}:9000

EXAMPLES:
  Load balance across 4 MinIO servers (http://minio1:9000 to http://minio4:9000):
    sidekick --address :8000 http://minio{1...4}:9000
  Load balance across 16 MinIO servers:
    sidekick --health-path=/minio/health/ready http://minio{1...16}:9000
  Fail over to a second site when every server of the first is down:
    sidekick --health-path=/minio/health/ready http://site1-minio{1...4}:9000 http://site2-minio{1...4}:9000";
