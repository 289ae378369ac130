#!/usr/bin/env bash
# make demo: three throw-away PostgreSQL clusters on this machine (A, B, C,
# unix sockets only), the gobucardo catalog installed on A, a two-source,
# one-target sync configured with bin/mcp and `mcp list all`; one run in the
# foreground; then `mcp start`, writes on both sources carried by autokick, a
# conflict, a conflict plugin (plugins/counters), `mcp kick`, `mcp status`,
# `mcp ps`, the conflict log, a check that
# every db holds the same rows, and `mcp stop`.
# Everything is stopped and removed at the end; DEMO_KEEP=1 keeps it running.
set -euo pipefail
cd "$(dirname "$0")/.."
MCP=$PWD/bin/mcp

bindir=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
	bindir=$(pg_config --bindir)
else
	bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
	echo "demo: PostgreSQL server binaries not found: apt-get install postgresql" >&2
	exit 1
fi

# PostgreSQL refuses to run as root: run the servers as the postgres user.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

base=$(mktemp -d /tmp/gobucardo-demo.XXXXXX)
chmod 755 "$base"
[ "$(id -u)" = 0 ] && chown postgres: "$base"

stop_all() {
	for n in A B C; do
		[ -f "$base/$n/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$base/$n/data" -m fast -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$base"
}
if [ "${DEMO_KEEP:-0}" != 1 ]; then trap stop_all EXIT; fi

port=5432
for n in A B C; do
	as_pg mkdir -p "$base/$n/sock"
	as_pg "$bindir/initdb" -D "$base/$n/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
	as_pg "$bindir/pg_ctl" -D "$base/$n/data" -l "$base/$n/log" -w \
		-o "-k $base/$n/sock -p $port -c listen_addresses= -c fsync=off -c shared_buffers=32MB" start >/dev/null
	as_pg "$bindir/psql" -qX -h "$base/$n/sock" -p $port -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE shop;
\c shop
CREATE TABLE public.accounts (aid integer PRIMARY KEY, bid integer NOT NULL, abalance integer NOT NULL, filler text);
CREATE TABLE public.branches (bid integer PRIMARY KEY, bbalance integer NOT NULL, filler text);
CREATE TABLE public.history (tid integer, bid integer, aid integer, delta integer, mtime timestamptz, filler text);
CREATE SEQUENCE public.order_seq;
SQL
	echo "started cluster $n: host=$base/$n/sock port=$port"
done

dsn() { echo "host=$base/$1/sock port=5432 user=postgres dbname=$2"; }
export GOBUCARDO_DSN="$(dsn A gobucardo)"
run() { echo; echo "\$ mcp $*"; "$MCP" "$@"; }

run install --create-db
run install
run add db A "host=$base/A/sock" port=5432 user=postgres dbname=shop
run add db B "host=$base/B/sock" port=5432 user=postgres dbname=shop pass=not-shown
run add db C "dsn=$(dsn C shop)"
run add all tables db=A relgroup=shop -T history
run add sequence public.order_seq db=A relgroup=shop
run add sync shop relgroup=shop dbs=A:source,B:source,C:target checktime=30s conflict_strategy=bucardo_latest
# history has no key: only a fullcopy target may take it.
run add table public.history db=A relgroup=history
run add sync history relgroup=history dbs=A:source,C:fullcopy autokick=false
echo
echo "\$ mcp add sync bad relgroup=history dbs=A:source,B:target   # refused: history has no key"
if "$MCP" add sync bad relgroup=history dbs=A:source,B:target; then
	echo "demo: a delta sync over a keyless table was accepted" >&2; exit 1
fi
run list all

psql_on() { as_pg "$bindir/psql" -qAtX -h "$base/$1/sock" -p 5432 -U postgres -d shop -v ON_ERROR_STOP=1 -c "$2"; }
sig() { psql_on "$1" "SELECT md5(string_agg(a::text, ',' ORDER BY aid)) FROM accounts a"; }
converged() { [ "$(sig A)" = "$(sig C)" ] && [ "$(sig B)" = "$(sig C)" ]; }
wait_converged() {
	for _ in $(seq 300); do converged && return 0; sleep 0.1; done
	echo "demo: the dbs did not converge; MCP log:" >&2; tail -n 30 "$base/mcp.log" >&2; exit 1
}

# One run in the foreground, without the daemon (cron, debugging).
psql_on A "INSERT INTO history SELECT g, 1, g, 1, now(), 'A' FROM generate_series(1, 100) g"
run sync run history --quiet

# The daemon: the MCP in the background, one controller per sync, kids.
run start --pid-file "$base/mcp.pid" --log-file "$base/mcp.log"
stop_all() {
	"$MCP" stop --pid-file "$base/mcp.pid" >/dev/null 2>&1 || true
	for n in A B C; do
		[ -f "$base/$n/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$base/$n/data" -m fast -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$base"
}

# Writes on both sources reach every db through autokick alone.
echo; echo "# writes on A and on B; autokick carries them"
psql_on A "INSERT INTO accounts SELECT g, g % 10, 0, 'from A' FROM generate_series(1, 5000) g; INSERT INTO branches SELECT g, 0, 'A' FROM generate_series(1, 10) g; SELECT setval('order_seq', 41)" >/dev/null
psql_on B "INSERT INTO accounts SELECT g, g % 10, 0, 'from B' FROM generate_series(5001, 8000) g"
wait_converged
echo "converged: A, B and C hold the same accounts"

# A conflict: the same row changed on A and on B while the sync is paused.
run pause shop
psql_on A "UPDATE accounts SET abalance = 100 WHERE aid = 1"
psql_on B "UPDATE accounts SET abalance = 200 WHERE aid = 1; DELETE FROM accounts WHERE aid > 7900"
run resume shop
wait_converged

# A conflict plugin: counters keeps every source's change of abalance
# (the base is C's row, the target), registered once it has been checked.
run add customcode balances plugin="$PWD/bin/plugins/counters" whenrun=conflict table=public.accounts columns=abalance timeout=10s
before=$(psql_on C "SELECT abalance FROM accounts WHERE aid = 2")
run pause shop
psql_on A "UPDATE accounts SET abalance = abalance + 10 WHERE aid = 2"
t_a=$(date +%T.%N)
psql_on B "UPDATE accounts SET abalance = abalance + 5 WHERE aid = 2"
t_b=$(date +%T.%N)
run resume shop
wait_converged
after=$(psql_on C "SELECT abalance FROM accounts WHERE aid = 2")
echo "aid 2: abalance $before, +10 on A and +5 on B: $after everywhere"
if [ "$after" != "$((before + 15))" ]; then
	echo "demo: the counters plugin did not add both changes (A written by $t_a, B by $t_b)" >&2
	"$MCP" conflicts shop >&2 || true
	as_pg "$bindir/psql" -X -h "$base/A/sock" -p 5432 -U postgres -d gobucardo \
		-c "SELECT id, state, started, ended, deletes, inserts, conflicts, status FROM gobucardo.syncrun WHERE sync = 'shop' ORDER BY id DESC LIMIT 6" >&2 || true
	for n in A B C; do
		delta=$(psql_on $n "SELECT delta_table FROM gobucardo.captured WHERE schema_name = 'public' AND rel_name = 'accounts'" 2>/dev/null || true)
		deltas=""
		[ -n "$delta" ] && deltas=$(psql_on $n "SELECT string_agg(format('%s at %s origin %s', txid, changed_at, origin), '; ') FROM gobucardo.\"$delta\" WHERE aid = 2" || true)
		echo "db $n: abalance $(psql_on $n "SELECT abalance FROM accounts WHERE aid = 2"), deltas of aid 2: ${deltas:-none}, watermark $(psql_on $n "SELECT snap FROM gobucardo.watermark" 2>/dev/null || echo none)" >&2
	done
	tail -n 60 "$base/mcp.log" >&2; exit 1
fi
run kick shop --timeout 30s
run kick history --timeout 30s
run status
run status shop
sleep 1.1 # the MCP publishes the process tree every second
run ps
run conflicts shop
run delta
echo
for n in A B C; do
	echo "db $n: accounts $(psql_on $n 'SELECT count(*) FROM accounts') rows (sum of abalance $(psql_on $n 'SELECT sum(abalance) FROM accounts')), history $(psql_on $n 'SELECT count(*) FROM history') rows, order_seq at $(psql_on $n 'SELECT last_value FROM order_seq')"
done
if ! converged; then
	echo "demo: the dbs did not converge" >&2; exit 1
fi
echo "A, B and C hold the same accounts."
if [ "${DEMO_KEEP:-0}" != 1 ]; then
	ctl=$(pgrep -f "$PWD/bin/(controller|kid) --sync" || true)
	run stop --pid-file "$base/mcp.pid"
	sleep 0.2
	for p in $ctl; do
		if kill -0 "$p" 2>/dev/null; then echo "demo: process $p survived mcp stop" >&2; exit 1; fi
	done
	echo "mcp stop left no controller or kid behind."
fi
if [ "${DEMO_KEEP:-0}" = 1 ]; then
	echo; echo "Clusters left running under $base (GOBUCARDO_DSN='$GOBUCARDO_DSN')."
fi
