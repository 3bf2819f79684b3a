#!/usr/bin/env bash
# A throwaway LAVA instance on this machine, for kbisect's LAVA executor
# tests: `lava-instance.sh start STATE` installs LAVA if needed (Debian 12's
# lava-server, lava-dispatcher, lavacli 2023.01), then starts a private
# PostgreSQL cluster, the server (gunicorn), the scheduler, the MultiNode
# coordinator and one worker with N `qemu` devices (TCG: no_kvm), on free
# ports, without systemd. It writes STATE/env (KBISECT_LAVA_URL, KBISECT_LAVA_TOKEN).
# `lava-instance.sh stop STATE` stops exactly what start started (by the pids
# it recorded), drops the cluster and restores the configuration it changed.
#
# Environment: KBISECT_LAVA_DEVICES (default 4: two runs of two guests) qemu
# devices. Extra devices of two types of their own, for the error tests:
# two kbisect-broken ones whose QEMU cannot start, and one kbisect-lonely
# (a two-guest job on it is never scheduled).
set -euo pipefail
# dpkg-reconfigure and LAVA's own python3 must not find another python3.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
cmd=${1:-}
state=${2:-}
if [ -z "$cmd" ] || { [ -z "$state" ] && [ "$cmd" != install ]; }; then
  echo "usage: $0 install | start STATE_DIR | stop STATE_DIR" >&2
  exit 2
fi
cluster=kbisectlava
pgver=15
conf_coord=/etc/lava-coordinator/lava-coordinator.conf
settings_db=/etc/lava-server/settings.d/00-kbisect-database.yaml
devdir=/etc/lava-server/dispatcher-config/devices
typedir=/etc/lava-server/dispatcher-config/device-types
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

log() { echo "lava-instance: $*" >&2; }

# free_port prints a TCP port nothing listens on.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$p" | grep -q .; then
      echo "$p"
      return
    fi
  done
  log "no free TCP port found"
  exit 1
}

# spawn NAME CMD...: starts CMD in its own session, records its pid.
spawn() {
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "$what did not come up; logs in $state"
  return 1
}

install_lava() {
  local missing=()
  for p in lava-server lava-dispatcher lavacli lava-coordinator postgresql; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian's LAVA 2023.01; a few minutes)"
  local aptlog before
  aptlog=$(mktemp /tmp/kbisect-lava-apt.XXXXXX)
  before=$(online_clusters)
  if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"; } >"$aptlog" 2>&1; then
    log "cannot install LAVA: apt-get install ${missing[*]} failed (see $aptlog):"
    tail -5 "$aptlog" >&2
    log "LAVA tests need Debian 12 (bookworm) with its main archive reachable"
    exit 3
  fi
  rm -f "$aptlog"
  # A package script may have started PostgreSQL's default cluster: the
  # instance uses a cluster of its own, and leaves nothing running.
  local c
  for c in $(online_clusters); do
    case " $before " in *" $c "*) ;; *) pg_ctlcluster ${c/:/ } stop || true ;; esac
  done
}

# online_clusters prints the running PostgreSQL clusters as VERSION:NAME.
online_clusters() {
  command -v pg_lsclusters >/dev/null || return 0
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { printf "%s:%s ", $1, $2 }'
}

manage() { runuser -u lavaserver -- lava-server manage "$@"; }

# add_device TYPE NAME EXTRA: a TCG qemu device on the worker, its
# dictionary extended by EXTRA; recorded in $devices for stop.
add_device() {
  printf "{%% extends 'qemu.jinja2' %%}\n{%% set no_kvm = True %%}\n%s\n" "$3" >"$devdir/$2.jinja2"
  chown lavaserver:lavaserver "$devdir/$2.jinja2"
  manage devices add --device-type "$1" --worker kbisect-worker "$2" >/dev/null
  devices+=("$2")
}

start() {
  mkdir -p "$state"
  chmod 755 "$state"
  if [ -e "$state/env" ]; then
    log "$state already holds an instance: stop it first"
    exit 2
  fi
  install_lava
  local pgport webport coordport pw ndev
  ndev=${KBISECT_LAVA_DEVICES:-4}
  pgport=$(free_port)
  webport=$(free_port)
  # The dispatcher reads the coordinator's port from the global
  # configuration: keep 3079 when free, else move it (restored at stop).
  coordport=3079
  if ss -Htln "sport = :$coordport" | grep -q .; then
    coordport=$(free_port)
  fi
  cp "$conf_coord" "$state/coordinator.conf.orig"
  printf '{\n  "port": %d,\n  "blocksize": 4096,\n  "poll_delay": 1,\n  "coordinator_hostname": "localhost"\n}\n' "$coordport" >"$conf_coord"

  log "postgres cluster $cluster on port $pgport"
  # A cluster left by an instance that was never stopped (a killed CI job).
  pg_dropcluster --stop $pgver $cluster >/dev/null 2>&1 || true
  pg_createcluster -q $pgver $cluster -p "$pgport" >"$state/pg.log" 2>&1
  echo $cluster >"$state/pgcluster"
  pg_ctlcluster $pgver $cluster start
  pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  cat >"$settings_db" <<EOF
# Written by kbisect's scripts/lava-instance.sh; removed by its stop.
DATABASES:
  default:
    ENGINE: "django.db.backends.postgresql"
    NAME: "lavaserver"
    USER: "lavaserver"
    PASSWORD: "$pw"
    HOST: "localhost"
    PORT: $pgport
# Job logs of this instance only: job ids start again at 1 in every
# instance, and LAVA would mix a new job's log with an old one's.
MEDIA_ROOT: "$state/media/"
EOF
  install -d -o lavaserver -g lavaserver "$state/media" "$state/media/job-output"
  chown lavaserver:lavaserver "$settings_db"
  chmod 640 "$settings_db"
  log "creating the database (migrations take a minute)"
  PGPORT=$pgport python3 /usr/share/lava-server/postinst.py --db --fixup >"$state/postinst.log" 2>&1 || {
    log "LAVA's database set-up failed (see $state/postinst.log):"
    tail -5 "$state/postinst.log" >&2
    exit 1
  }

  spawn gunicorn gunicorn3 lava_server.wsgi -u lavaserver -g lavaserver --workers 2 --timeout 300 --bind "127.0.0.1:$webport"
  install -o lavaserver -m 644 /dev/null "$state/scheduler.daemon.log"
  spawn scheduler runuser -u lavaserver -- lava-server manage lava-scheduler --level INFO --log-file "$state/scheduler.daemon.log"
  spawn coordinator lava-coordinator --logfile "$state/coordinator.daemon.log" --loglevel INFO
  wait_for "the LAVA server" 120 curl -fsS "http://127.0.0.1:$webport/api/v0.2/system/version/"

  manage users add --superuser --staff --passwd "$pw" kbisect >/dev/null
  local token wtoken
  token=$(manage tokens add --user kbisect | tail -1 | awk '{print $NF}')
  wtoken=$(manage workers add --description "kbisect test worker" kbisect-worker | tail -1 | awk '{print $NF}')
  manage device-types add qemu >/dev/null 2>&1 || true
  local devices=() types=(kbisect-broken kbisect-lonely)
  for i in $(seq "$ndev"); do
    add_device qemu "kbisect-qemu0$i" ""
  done
  # Two devices whose QEMU cannot start (a MultiNode run needs two): the
  # error path. One device of a type of its own: a two-guest run on it can
  # never be scheduled (the never-started path).
  for t in "${types[@]}"; do
    printf "{%% extends 'qemu.jinja2' %%}\n" >"$typedir/$t.jinja2"
    chown lavaserver:lavaserver "$typedir/$t.jinja2"
    manage device-types add "$t" >/dev/null 2>&1 || true
  done
  add_device kbisect-broken kbisect-broken01 "{% set memory = 'no-such-size' %}"
  add_device kbisect-broken kbisect-broken02 "{% set memory = 'no-such-size' %}"
  add_device kbisect-lonely kbisect-lonely01 ""
  printf '%s\n' "${devices[@]}" >"$state/devices"

  mkdir -p "$state/worker"
  spawn worker lava-worker --name kbisect-worker --url "http://127.0.0.1:$webport/" --token "$wtoken" \
    --worker-dir "$state/worker" --log-file "$state/worker.daemon.log" --level INFO --ping-interval 5 --job-log-interval 2
  wait_for "the worker" 60 sh -c "manage() { runuser -u lavaserver -- lava-server manage \"\$@\"; }; manage workers details kbisect-worker | grep -q 'state *: Online'"
  cat >"$state/env" <<EOF
KBISECT_LAVA_URL=http://127.0.0.1:$webport/
KBISECT_LAVA_TOKEN=$token
KBISECT_LAVA_DEVICES=$ndev
EOF
  log "LAVA is up at http://127.0.0.1:$webport/ with ${#devices[@]} devices (${devices[*]})"
}

stop() {
  [ -d "$state" ] || return 0
  local name pid
  for name in worker scheduler coordinator gunicorn; do
    [ -f "$state/$name.pid" ] || continue
    pid=$(cat "$state/$name.pid")
    # Each was started in its own session: end the whole group (gunicorn's
    # workers, the worker's lava-run and QEMU).
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for name in worker scheduler coordinator gunicorn; do
    [ -f "$state/$name.pid" ] || continue
    pid=$(cat "$state/$name.pid")
    for _ in $(seq 20); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$state/$name.pid"
  done
  if [ -f "$state/devices" ]; then
    while read -r d; do rm -f "$devdir/$d.jinja2"; done <"$state/devices"
    rm -f "$typedir/kbisect-broken.jinja2" "$typedir/kbisect-lonely.jinja2" "$state/devices"
  fi
  rm -f "$settings_db"
  if [ -f "$state/pgcluster" ]; then
    pg_ctlcluster $pgver $cluster stop -m immediate 2>/dev/null || true
    pg_dropcluster $pgver $cluster 2>/dev/null || true
    rm -f "$state/pgcluster"
  fi
  if [ -f "$state/coordinator.conf.orig" ]; then
    cp "$state/coordinator.conf.orig" "$conf_coord"
    rm -f "$state/coordinator.conf.orig"
  fi
  rm -f "$state/env"
  log "stopped"
}

case "$cmd" in
install) install_lava ;;
start) start ;;
stop) stop ;;
*)
  echo "usage: $0 install | start STATE_DIR | stop STATE_DIR" >&2
  exit 2
  ;;
esac
