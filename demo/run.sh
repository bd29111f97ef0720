#!/usr/bin/env bash
# Local demo: sidekick in front of four S3 servers (s3s-fs on 127.0.0.2-5), a real
# boto3 workload through it, and one server killed part-way and restarted a few
# seconds later: the workload goes on without errors.
#
# Usage: demo/run.sh [--quick] [--keep]
#   --quick  about 15 s of load instead of 45 s (for CI)
#   --keep   keep the temporary directory (data and logs); it is also kept when the
#            run fails (not when it is interrupted)
#
# Needs Linux (every node listens on its own loopback address), cargo and python3.
# Installs s3s-fs (cargo install) and boto3 (pip) when they are missing.
# SIDEKICK_BIN=/path/to/sidekick skips `cargo build --release`.
# Exits 0 when every operation succeeded and every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=45 kill_at=12 down_for=10 keep=0
for arg in "$@"; do
    case "$arg" in
    --quick) duration=15 kill_at=5 down_for=4 ;;
    --keep) keep=1 ;;
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

s3s_fs="$(command -v s3s-fs || true)"
if [[ -z "$s3s_fs" ]]; then
    say "cargo install s3s-fs@0.14.1 --features binary --locked"
    cargo install s3s-fs@0.14.1 --features binary --locked
    s3s_fs="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
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
data="$work/data" logs="$work/logs"
mkdir -p "$data" "$logs"
declare -A node_pid=()
other_pids=()
status=1

# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if ((status == 130 || status == 143)); then
        printf '\n==> interrupted: stopping everything the demo started\n'
    fi
    local pids=("${other_pids[@]}" "${node_pid[@]}") pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
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

# shellcheck disable=SC2329 # run by wait_for
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # DESCRIPTION SECONDS COMMAND...
    local what="$1" deadline=$((SECONDS + $2))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out waiting for $what (logs in $logs)"
        sleep 0.1
    done
}

# Two ports free on all four node addresses: P for S3, H for the readiness answers.
read -r s3_port health_port < <("$py" - <<'EOF'
import socket
ips = [f"127.0.0.{n}" for n in range(2, 6)]
found = []
while len(found) < 2:
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

access_key=sidekickdemo secret_key=sidekick-demo-secret-key
start_node() { # N: s3s-fs on 127.0.0.N, logging one line per request for the summary
    RUST_LOG="info,s3s::service=debug" "$s3s_fs" --host "127.0.0.$1" --port "$s3_port" \
        --access-key "$access_key" --secret-key "$secret_key" "$data" \
        >>"$logs/node$1.log" 2>&1 &
    node_pid[$1]=$!
}

say "starting four s3s-fs nodes on 127.0.0.{2..5}:$s3_port (one shared data directory)"
for n in 2 3 4 5; do start_node "$n"; done
"$py" demo/ready.py "$health_port" "$s3_port" 127.0.0.{2..5} >"$logs/ready.log" 2>&1 &
other_pids+=($!)
for n in 2 3 4 5; do
    wait_for "s3s-fs on 127.0.0.$n" 30 tcp_open "127.0.0.$n" "$s3_port"
    wait_for "readiness on 127.0.0.$n" 10 tcp_open "127.0.0.$n" "$health_port"
done

# sidekick's own ellipses (three dots), quoted so that the shell leaves them alone.
endpoints="http://127.0.0.{2...5}:$s3_port"
say "starting sidekick --health-port $health_port --health-duration 1s --log $endpoints"
"$bin" --address 127.0.0.1:0 --health-port "$health_port" --health-duration 1s --log \
    "$endpoints" 2>"$logs/sidekick.log" &
other_pids+=($!)
wait_for "sidekick to listen" 10 grep -q "listening on" "$logs/sidekick.log"
addr="$(sed -n 's/.*sidekick listening on \([^ ]*\).*/\1/p' "$logs/sidekick.log" | head -n1)"
# shellcheck disable=SC2329 # run by wait_for
up_count() { [[ "$(grep -c ' is up' "$logs/sidekick.log")" -ge 4 ]]; }
wait_for "four backends up" 20 up_count

say "load: 1 writer + 3 readers for ${duration}s through http://$addr;" \
    "127.0.0.3 is killed at ${kill_at}s and back ${down_for}s later"
node_logs=()
for n in 2 3 4 5; do node_logs+=(--node-log "127.0.0.$n:$s3_port=$logs/node$n.log"); done
"$py" demo/workload.py --endpoint "http://$addr" --access-key "$access_key" \
    --secret-key "$secret_key" --duration "$duration" --readers 3 \
    --tail "demo=$logs/events.log" --tail "sidekick=$logs/sidekick.log" "${node_logs[@]}" &
workload=$!
other_pids+=("$workload")

sleep "$kill_at"
event "killing s3s-fs on 127.0.0.3:$s3_port (SIGKILL)"
kill -KILL "${node_pid[3]}"
wait "${node_pid[3]}" 2>/dev/null || true
sleep "$down_for"
event "restarting s3s-fs on 127.0.0.3:$s3_port"
# On start s3s-fs deletes the temporary files in its root, which here is shared: a PUT
# that another node is writing at that moment fails with a 500, and boto3 retries it.
start_node 3

set +e
wait "$workload"
status=$?
set -e
exit "$status"
