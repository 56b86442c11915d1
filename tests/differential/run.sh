#!/usr/bin/env bash
# Runs the differential tests against a real RabbitMQ: starts a private
# rabbitmq-server on loopback, runs the test binaries against it one after the
# other, stops the server (also on failure or interruption).
#
# Usage: tests/differential/run.sh [BINARY [ARGS...] [-- BINARY [ARGS...]]...]
#   Without arguments: build/gcc/tests/differential/routing_differential, then
#   queue_differential, then consumer_differential, then reply_to_differential. ARGS go to the binary before
#   them (e.g. --seeds 1,2,3; --help lists them).
# Needs the Debian packages rabbitmq-server and librabbitmq-dev.
#
# Exit status: 0 if every binary passed, 1 if one found a disagreement (and none
# failed otherwise), else the first other failure's status. With several binaries,
# a last line sums their "N tests failed out of M" lines.
#
# Everything the server writes lives in one temporary directory (its own
# node name, Mnesia and log directories, Erlang cookie, epmd port), so it never
# touches a system RabbitMQ and leaves nothing behind. Networking: 127.0.0.1 only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The commands, one per array element, each its words joined by \x1f (unit separator).
commands=()
if (($# == 0)); then
    for name in routing_differential queue_differential consumer_differential reply_to_differential; do
        commands+=("$root/build/gcc/tests/differential/$name")
    done
else
    command=""
    for arg in "$@"; do
        if [ "$arg" = "--" ]; then
            [ -n "$command" ] && commands+=("$command")
            command=""
        else
            command+="${command:+$'\x1f'}$arg"
        fi
    done
    [ -n "$command" ] && commands+=("$command")
fi
for command in "${commands[@]}"; do
    bin="${command%%$'\x1f'*}"
    if [ ! -x "$bin" ]; then
        echo "run.sh: no test binary at $bin (build the $(basename "$bin") target)" >&2
        exit 1
    fi
done
scripts="${RABBITMQ_SCRIPTS:-/usr/lib/rabbitmq/bin}"
if [ ! -x "$scripts/rabbitmq-server" ]; then
    echo "run.sh: no $scripts/rabbitmq-server (install the rabbitmq-server package)" >&2
    exit 1
fi

# A port nothing listens on: $1 if free, else a random one from 20000-39999.
port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p="$1" tries=0
    while port_in_use "$p"; do
        ((++tries > 100)) && { echo "run.sh: no free port found" >&2; return 1; }
        p=$((20000 + RANDOM % 20000))
    done
    echo "$p"
}
# AMQP, Erlang distribution and our own epmd (never the system epmd's 4369).
amqp_port="$(free_port 5672)"
dist_port="$(free_port $((amqp_port + 20000 > 65000 ? 25672 : amqp_port + 20000)))"
while [ "$dist_port" = "$amqp_port" ]; do dist_port="$(free_port $((20000 + RANDOM % 20000)))"; done
epmd_port=4369
while [ "$epmd_port" = 4369 ] || [ "$epmd_port" = "$amqp_port" ] || [ "$epmd_port" = "$dist_port" ]; do
    epmd_port="$(free_port $((20000 + RANDOM % 20000)))"
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/warren-rabbitmq.XXXXXX")"
server_pid=""
epmd_pid=""

stop_server() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: stopping rabbitmq-server (pid $server_pid)"
        kill -TERM "$server_pid" 2>/dev/null || true   # the Erlang VM stops cleanly on SIGTERM
        for _ in $(seq 1 300); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "run.sh: rabbitmq-server did not stop in 30 s; killing it" >&2
            # The script's own pid, then the Erlang VM's (it writes it once booted).
            kill -KILL "$server_pid" 2>/dev/null || true
            if [ -s "$tmp/rabbitmq.pid" ]; then kill -KILL "$(cat "$tmp/rabbitmq.pid")" 2>/dev/null || true; fi
        fi
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$epmd_pid" ]; then
        kill -TERM "$epmd_pid" 2>/dev/null || true
        wait "$epmd_pid" 2>/dev/null || true
    fi
    # Exit status 1 is a disagreement, reported by the test; anything else may be
    # the server's doing (and the log holds the refusals the test provokes).
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        local logs
        logs="$(grep -h . "$tmp"/log/*.log 2>/dev/null | tail -n 30 || true)"
        [ -z "$logs" ] || printf 'run.sh: end of the RabbitMQ logs:\n%s\n' "$logs" >&2
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$tmp/mnesia" "$tmp/log"
echo '[].' >"$tmp/enabled_plugins"
: >"$tmp/rabbitmq-env.conf"     # instead of /etc/rabbitmq/rabbitmq-env.conf
cat >"$tmp/rabbitmq.conf" <<'EOF'
disk_free_limit.absolute = 1MB
log.console = false
log.file.level = warning
EOF

# Our own epmd on a private port, in the foreground so that we can stop it
# (one the node started itself would daemonise).
epmd -port "$epmd_port" -address 127.0.0.1 >"$tmp/log/epmd.log" 2>&1 </dev/null &
epmd_pid=$!
for _ in $(seq 1 50); do port_in_use "$epmd_port" && break; sleep 0.1; done

echo "run.sh: starting rabbitmq-server on 127.0.0.1:$amqp_port (node dir $tmp)"
start=$SECONDS
env HOME="$tmp" \
    RABBITMQ_NODENAME="warren-diff-$$@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$amqp_port" \
    RABBITMQ_DIST_PORT="$dist_port" \
    ERL_EPMD_PORT="$epmd_port" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_MNESIA_BASE="$tmp/mnesia" \
    RABBITMQ_LOG_BASE="$tmp/log" \
    RABBITMQ_PID_FILE="$tmp/rabbitmq.pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$tmp/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$tmp/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$tmp/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$tmp/advanced.config" \
    "$scripts/rabbitmq-server" >"$tmp/log/startup.log" 2>&1 </dev/null &
server_pid=$!

# Ready when it accepts connections (it opens its listeners last); the test
# binary also retries its login for a while.
until port_in_use "$amqp_port"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: rabbitmq-server exited during start-up:" >&2
        tail -n 40 "$tmp/log/startup.log" >&2 || true
        exit 1
    fi
    if ((SECONDS - start > 90)); then
        echo "run.sh: rabbitmq-server not ready after 90 s" >&2
        exit 1
    fi
    sleep 0.2
done
echo "run.sh: rabbitmq-server ready after $((SECONDS - start)) s"

status=0
failed=0
total=0
for command in "${commands[@]}"; do
    IFS=$'\x1f' read -r -a words <<<"$command"
    set +e
    "${words[0]}" --host 127.0.0.1 --port "$amqp_port" "${words[@]:1}" | tee "$tmp/output"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ] && { [ "$status" -eq 0 ] || [ "$status" -eq 1 ]; }; then
        status=$rc
    fi
    line="$(grep -E '[0-9]+ tests failed out of [0-9]+' "$tmp/output" | tail -n1 || true)"
    if [ -n "$line" ]; then
        # The count may start the line ("0 tests failed out of 0") or follow a prefix.
        failed=$((failed + $(sed -E 's/^(.*[^0-9])?([0-9]+) tests failed out of [0-9]+.*/\2/' <<<"$line")))
        total=$((total + $(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")))
    fi
done
if ((${#commands[@]} > 1)); then
    echo "run.sh: $failed tests failed out of $total (all differential tests)"
fi
exit "$status"
