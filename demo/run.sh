#!/usr/bin/env bash
# Local demo: sidekick in front of a four-node Garage cluster (a real distributed S3
# store, replication factor 3, on 127.0.0.2-5) with its S3 shared cache on a one-node
# Garage (127.0.0.6), a boto3 workload through it with concurrent writers and readers
# that read a hot set of objects again (whole and ranged), and one origin node
# SIGKILLed a third of the way in and restarted a few seconds later: the workload goes
# on without errors, and reads of the hot set are answered from the cache.
#
# Usage: demo/run.sh [--quick] [--keep] [--no-cache]
#   --quick     about 15 s of load instead of 45 s (for CI)
#   --keep      keep the temporary directory (data and logs); it is also kept when the
#               run fails (not when it is interrupted)
#   --no-cache  sidekick without its cache (and no cache store), to compare
#
# Needs Linux (every node listens on its own loopback address), cargo and python3.
# Installs Garage (cargo install) and boto3 (pip) when they are missing.
# SIDEKICK_BIN=/path/to/sidekick skips `cargo build --release`.
# Exits 0 when every operation succeeded and every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=45 kill_at=15 down_for=10 keep=0 cache=1
for arg in "$@"; do
    case "$arg" in
    --quick) duration=15 kill_at=5 down_for=4 ;;
    --keep) keep=1 ;;
    --no-cache) cache=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo/run.sh: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'demo/run.sh: %s\n' "$*" >&2
    exit 1
}

# --- tools ------------------------------------------------------------------------
if [[ -n "${SIDEKICK_BIN:-}" ]]; then
    bin="$SIDEKICK_BIN"
else
    say "cargo build --release"
    cargo build --release
    bin="${CARGO_TARGET_DIR:-target}/release/sidekick"
fi
[[ -x "$bin" ]] || die "no sidekick binary at $bin"

garage="$(command -v garage || true)"
if [[ -z "$garage" ]]; then
    say "cargo install garage@2.5.0 --locked --no-default-features --features bundled-libs,sqlite"
    cargo install garage@2.5.0 --locked --no-default-features --features bundled-libs,sqlite
    garage="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
fi

py=python3
if ! "$py" -c 'import boto3' 2>/dev/null; then
    say "pip install boto3"
    if ! "$py" -m pip install --quiet boto3; then
        # A Python that refuses global installs (PEP 668) gets a private venv.
        venv="${XDG_CACHE_HOME:-$HOME/.cache}/sidekick-demo/venv"
        say "installing boto3 into $venv instead"
        "$py" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet boto3
        py="$venv/bin/python"
    fi
fi

# --- everything below runs under the trap that stops it ---------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/sidekick-demo.XXXXXX")"
logs="$work/logs"
mkdir -p "$logs"
declare -A node_pid=()
other_pids=()
status=1

# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if ((status == 130 || status == 143)); then
        printf '\n==> interrupted: stopping everything the demo started\n'
    fi
    local pid
    # Garage nodes take seconds to stop on SIGTERM, and their data is thrown away.
    {
        for pid in "${node_pid[@]}"; do kill -KILL "$pid" || true; done
        for pid in "${node_pid[@]}"; do wait "$pid" || true; done
    } 2>/dev/null
    for pid in "${other_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${other_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${other_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${other_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((keep)) || ((status != 0 && status != 130 && status != 143)); then
        echo "data and logs kept in $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

event() { printf '%s\n' "$*" >>"$logs/events.log"; }

wait_for() { # DESCRIPTION SECONDS COMMAND...
    local what="$1" deadline=$((SECONDS + $2))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out waiting for $what (logs in $logs)"
        sleep 0.1
    done
}

# shellcheck disable=SC2329 # run by wait_for
healthy() ( # IP: the node's admin API answers GET /health with 200
    exec 3<>"/dev/tcp/$1/$admin_port" || exit 1
    printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
    read -r -t 5 line <&3 && [[ "$line" == "HTTP/1."?" 200"* ]]
) 2>/dev/null

# shellcheck disable=SC2329 # run by wait_for
quiet() { "$@" >>"$logs/cli.log" 2>&1; } # a Garage CLI call that may need retrying

# Three ports free on all five node addresses: S3, RPC between the nodes, admin API.
read -r s3_port rpc_port admin_port < <("$py" - <<'EOF'
import socket
ips = [f"127.0.0.{n}" for n in range(2, 7)]
found = []
while len(found) < 3:
    with socket.socket() as s:
        s.bind((ips[0], 0))
        port = s.getsockname()[1]
    try:
        for ip in ips:
            with socket.socket() as s:
                s.bind((ip, port))
    except OSError:
        continue
    if port not in found:
        found.append(port)
print(*found)
EOF
)

rpc_secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
admin_token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# Garage key ids are GK and 24 hex digits, secrets 64 hex digits.
access_key="GK$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
secret_key="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
bucket=sidekick-demo
# The cache store is a cluster of its own, as a store near the clients would be: one
# node, one copy of each block (a cache loses nothing it cannot fill again), its own
# RPC secret, and untouched when the origin's node is killed.
cache_rpc_secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
cache_access_key="GK$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cache_secret_key="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
owner_access_key="GK$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
owner_secret_key="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
cache_bucket=sidekick-cache
nodes=(2 3 4 5)
((cache)) && nodes+=(6)
for n in "${nodes[@]}"; do
    replicas=3 secret="$rpc_secret"
    ((n == 6)) && replicas=1 secret="$cache_rpc_secret"
    mkdir -p "$work/node$n"
    cat >"$work/node$n/garage.toml" <<EOF
metadata_dir = "$work/node$n/meta"
data_dir = "$work/node$n/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = $replicas
rpc_bind_addr = "127.0.0.$n:$rpc_port"
rpc_public_addr = "127.0.0.$n:$rpc_port"
rpc_bind_outgoing = true
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.$n:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.$n:$admin_port"
admin_token = "$admin_token"
EOF
done
# shellcheck disable=SC2329 # called through wait_for
g() { "$garage" -c "$work/node2/garage.toml" "$@"; } # the CLI, through node 2
start_node() { # N: Garage on 127.0.0.N
    "$garage" -c "$work/node$1/garage.toml" server >>"$logs/node$1.log" 2>&1 &
    node_pid[$1]=$!
}

say "starting four Garage nodes on 127.0.0.{2..5} (S3 port $s3_port, admin port $admin_port)"
((cache)) && say "and the cache store: one Garage node on 127.0.0.6, replication factor 1"
for n in "${nodes[@]}"; do start_node "$n"; done
# Each node writes its key on start; `node id` reads it.
declare -A node_id=()
for n in "${nodes[@]}"; do
    wait_for "Garage on 127.0.0.$n" 30 quiet "$garage" -c "$work/node$n/garage.toml" node id -q
    node_id[$n]="$("$garage" -c "$work/node$n/garage.toml" node id -q 2>/dev/null)"
done
for n in 3 4 5; do wait_for "node 2 to connect to 127.0.0.$n" 30 quiet g node connect "${node_id[$n]}"; done
# A node saves the peers it knows once a minute: one restarted sooner would know
# none. With every peer in its configuration it connects to them at once.
peers="$(printf '"%s", ' "${node_id[2]}" "${node_id[3]}" "${node_id[4]}" "${node_id[5]}")"
for n in 2 3 4 5; do
    { echo "bootstrap_peers = [${peers%, }]"; cat "$work/node$n/garage.toml"; } >"$work/node$n/garage.new"
    mv "$work/node$n/garage.new" "$work/node$n/garage.toml"
done
say "layout: zone dc1, 1G each, replication factor 3"
ids=()
for n in 2 3 4 5; do ids+=("${node_id[$n]%@*}"); done
wait_for "layout assign" 30 quiet g layout assign -z dc1 -c 1G "${ids[@]}"
wait_for "layout apply" 30 quiet g layout apply --version 1
for n in 2 3 4 5; do wait_for "Garage on 127.0.0.$n to be healthy" 60 healthy "127.0.0.$n"; done
cli() { quiet g "$@" || die "garage $1 $2 failed (output in $logs/cli.log)"; }
cli key import --yes -n sidekick-demo "$access_key" "$secret_key"
cli bucket create "$bucket"
cli bucket allow --read --write --owner "$bucket" --key "$access_key"

cache_flags=() cache_env=()
if ((cache)); then
    say "cache store: layout, bucket $cache_bucket, sidekick's key that may read and write it," \
        "a lifecycle rule expiring objects after 7 days"
    # shellcheck disable=SC2329 # called through wait_for
    g6() { "$garage" -c "$work/node6/garage.toml" "$@"; }
    wait_for "cache layout assign" 30 quiet g6 layout assign -z dc1 -c 1G "${node_id[6]%@*}"
    wait_for "cache layout apply" 30 quiet g6 layout apply --version 1
    wait_for "the cache store to be healthy" 60 healthy 127.0.0.6
    cli6() { quiet g6 "$@" || die "garage $1 $2 on the cache store failed (output in $logs/cli.log)"; }
    cli6 key import --yes -n sidekick-cache "$cache_access_key" "$cache_secret_key"
    cli6 bucket create "$cache_bucket"
    cli6 bucket allow --read --write "$cache_bucket" --key "$cache_access_key"
    # Garage takes lifecycle rules through the S3 API (Expiration and
    # AbortIncompleteMultipartUpload only), from a key with the owner permission on
    # the bucket: the operator's, not sidekick's.
    cli6 key import --yes -n cache-owner "$owner_access_key" "$owner_secret_key"
    cli6 bucket allow --owner "$cache_bucket" --key "$owner_access_key"
    quiet "$py" - "http://127.0.0.6:$s3_port" "$owner_access_key" "$owner_secret_key" \
        "$cache_bucket" <<'EOF' || die "the cache bucket's lifecycle rule failed (output in $logs/cli.log)"
import sys
import boto3
endpoint, key, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="garage")
s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
    {"ID": "expire-cache", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 7}}]})
print("cache bucket lifecycle:", s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
EOF
    # The workload's objects are 16 KiB to 1 MiB: those of 64 KiB and more are cached
    # in 64 KiB blocks, so a 1 MiB object is 16 blocks and a ranged read hits by block.
    cache_flags=(--cache-endpoint "http://127.0.0.6:$s3_port" --cache-bucket "$cache_bucket"
        --cache-region garage --cache-health-port "$admin_port" --cache-health-path /health
        --cache-min-size 64KiB --cache-block-size 64KiB)
    # The cache store's keys from the environment: the secret stays out of the process list.
    cache_env=(SIDEKICK_CACHE_ACCESS_KEY="$cache_access_key" SIDEKICK_CACHE_SECRET_KEY="$cache_secret_key")
fi

# sidekick's own ellipses (three dots), quoted so that the shell leaves them alone.
endpoints="http://127.0.0.{2...5}:$s3_port"
say "starting sidekick --health-port $admin_port --health-path /health --health-duration 1s --log" \
    "${cache_flags[@]}" "$endpoints"
env "${cache_env[@]}" "$bin" --address 127.0.0.1:0 --health-port "$admin_port" --health-path /health \
    --health-duration 1s --log "${cache_flags[@]}" "$endpoints" 2>"$logs/sidekick.log" &
other_pids+=($!)
wait_for "sidekick to listen" 10 grep -q "listening on" "$logs/sidekick.log"
addr="$(sed -n 's/.*sidekick listening on \([^ ]*\).*/\1/p' "$logs/sidekick.log" | head -n1)"
# shellcheck disable=SC2329 # run by wait_for
up_count() { [[ "$(grep -v 'cache node' "$logs/sidekick.log" | grep -c ' is up')" -ge 4 ]]; }
wait_for "four backends up" 20 up_count
if ((cache)); then
    wait_for "sidekick's check of the cache bucket" 20 \
        grep -q "cache bucket $cache_bucket.*: readable and writable" "$logs/sidekick.log"
fi

say "load: 3 writers + 3 readers for ${duration}s through http://$addr;" \
    "127.0.0.3 is killed at ${kill_at}s and back ${down_for}s later"
workload_flags=()
((cache)) && workload_flags=(--cache)
"$py" demo/workload.py --endpoint "http://$addr" --access-key "$access_key" \
    --secret-key "$secret_key" --region garage --bucket "$bucket" \
    --duration "$duration" --writers 3 --readers 3 "${workload_flags[@]}" \
    --tail "demo=$logs/events.log" --tail "sidekick=$logs/sidekick.log" &
workload=$!
other_pids+=("$workload")

sleep "$kill_at"
event "killing Garage on 127.0.0.3 (SIGKILL)"
kill -KILL "${node_pid[3]}"
wait "${node_pid[3]}" 2>/dev/null || true
sleep "$down_for"
event "restarting Garage on 127.0.0.3"
start_node 3
# The restarted node connects to its peers at once, but they count it up only on a
# connection of their own, and retry a lost peer every 30 s: each is told to connect now.
for n in 2 4 5; do
    wait_for "127.0.0.$n to reconnect to 127.0.0.3" 30 \
        quiet "$garage" -c "$work/node$n/garage.toml" node connect "${node_id[3]}"
done

set +e
wait "$workload"
status=$?
set -e
exit "$status"
