//! The `--help` text around the flags: what sidekick is, what a SITE is, the value
//! formats, sidekick's own paths, signals, exit codes and examples. Lines stay within
//! 80 columns, so that clap wraps none of them on a usual terminal; a long example
//! continues with `\` rather than wrapping into what looks like a second command.

pub const ABOUT: &str = "High-performance sidecar HTTP load balancer.

Listens on one address and spreads the application's HTTP traffic over the \
endpoints of the first SITE that has a backend up, avoiding servers that fail \
their readiness check or fail requests. When every backend of SITE1 is down, \
SITE2 serves, and so on.";

pub const AFTER: &str = "\
Sites:
  A SITE is a comma-separated list of endpoints, each with optional ellipses
  {N...M} (three dots; {01...16} pads to two digits):
    http://minio{1...4}:9000,http://minio{5...8}:9000

Values:
  durations  a number with a unit: 500ms, 5s, 1m30s, 2h
  sizes      65536 (bytes), 64KiB, 1MiB, 1GiB; K, KB and KiB all mean 1024
  Every flag but --check, --help and --version has a SIDEKICK_* environment
  variable (true or false for a switch); the command line wins over it.

Own paths (sidekick answers these itself):
  GET /v1/health            200 while any site has a backend up, else 502
  GET /.prometheus/metrics  Prometheus metrics of every backend
  GET /v1/certificates      the --auto-tls-host certificate (PEM)

Signals:
  SIGTERM, SIGINT  stop accepting, let in-flight requests finish (--drain-timeout)
  SIGHUP           check every endpoint again now, resolving names afresh

Exit codes:
  0  stopped by SIGTERM or SIGINT; --help, --version, --check
  1  failed while serving
  2  a bad flag, value or SITE, or an address that cannot be listened on

Examples:
  Load balance across 4 MinIO servers (http://minio1:9000 to minio4:9000):
    sidekick --address :8000 http://minio{1...4}:9000
  Load balance across 16 MinIO servers:
    sidekick --health-path=/minio/health/ready http://minio{1...16}:9000
  Fail over to a second site when every server of the first is down:
    sidekick --health-path=/minio/health/ready \\
      http://site1-minio{1...4}:9000 http://site2-minio{1...4}:9000
  Check a configuration without starting:
    sidekick --check --health-port 9001 http://rack{1...2}-node{1...4}:9000";
