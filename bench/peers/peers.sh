#!/bin/sh
# make bench-peers: the same no-op call on Celery, 2 prefork workers, with Redis
# as broker and result backend, printed beside bench/latest.json (run make bench
# first for the product's column).
#
# Installs Debian's redis-server, python3-celery and python3-redis (Celery's Redis
# transport) when they are missing. Runs Debian's interpreter (/usr/bin/python3),
# which is where those packages live. Redis listens on 127.0.0.1 on a free port
# with no persistence; Redis and Celery are stopped when the script ends, however
# it ends. Not part of make test.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
py=${PEERS_PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/snakebench-peers.XXXXXX")
redis_pid=
celery_pid=

stop() {
	for pid in $celery_pid $redis_pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $celery_pid $redis_pid; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

install() {
	if command -v redis-server >/dev/null 2>&1 &&
		"$py" -c 'import celery, redis' 2>/dev/null; then
		return
	fi
	echo "bench-peers: installing redis-server python3-celery python3-redis" >&2
	apt-get update -qq
	# No service start from the package: this script runs its own server.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
		apt-get install -y -qq --no-install-recommends \
		redis-server python3-celery python3-redis >/dev/null
}

free_port() {
	"$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

start_redis() {
	port=$(free_port)
	redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
		--dir "$work" --logfile "$work/redis.log" --protected-mode yes &
	redis_pid=$!
	url="redis://127.0.0.1:$port/0"
	i=0
	until redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			echo "bench-peers: redis-server did not answer on 127.0.0.1:$port" >&2
			cat "$work/redis.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

start_celery() {
	cd "$here"
	SNAKEBENCH_REDIS_URL=$url "$py" -m celery -A noop_tasks worker \
		--pool prefork --concurrency 2 --loglevel WARNING --without-gossip \
		--without-mingle --without-heartbeat --hostname "snakebench@127.0.0.1" \
		>"$work/celery.log" 2>&1 &
	celery_pid=$!
	cd - >/dev/null
}

install
start_redis
start_celery
echo "bench-peers: redis $url, celery pid $celery_pid" >&2
"$py" "$here/peers_bench.py" --url "$url" --redis-pid "$redis_pid" \
	--celery-pid "$celery_pid" --latest "$bench/latest.json" \
	--out "$bench/peers.json" "$@" || {
	echo "bench-peers: failed; celery log:" >&2
	tail -n 30 "$work/celery.log" >&2
	exit 1
}
echo "note: the agent embeds its broker (NATS): its CPU and RSS cover redis-server's rows too."
