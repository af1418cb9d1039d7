#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) for `make run`, the test
# suite and the benchmark. Its jars come from Maven Central at the version pinned in pom.xml beside this
# script and are cached outside the work tree, so a fresh machine needs only a JDK and Maven.
#
#   kafka-local.sh fetch                       resolve the jars into the cache (idempotent)
#   kafka-local.sh start --dir D [--port P]    format D if new, start in the background, wait until ready
#       [--set KEY=VALUE]...                   add (or override) a broker setting when D is first made; the
#                                              broker-under-load reproduction (bench/broker_under_load.py) uses it
#       [--plaintext]                          ONLY for `make bench`'s baseline of what security costs: D's
#                                              listeners are PLAINTEXT on 127.0.0.1 and there is no authorizer
#                                              (plaintext-baseline.properties). Nothing else passes it, and a
#                                              directory made secured never becomes plaintext, nor the reverse.
#   kafka-local.sh stop --dir D                stop the broker started with D (SIGTERM, then SIGKILL)
#   kafka-local.sh status --dir D              exit 0 when the broker of D is running
#
# The broker is secured as in production: one SASL_SSL listener (SCRAM-SHA-512 over TLS), KRaft's
# StandardAuthorizer with nothing allowed that no ACL allows, and one bootstrap admin, the only super user.
# The first start of D makes, under D (mode 0700):
#   tls/ca.pem          the local certificate authority's certificate: the clients' trust store
#   tls/broker.pem      the broker's unencrypted PKCS#8 key and certificate (SAN IP:127.0.0.1, DNS:localhost)
#   admin.password      the bootstrap admin's SCRAM password (user `admin`), created at format time
# The CA's own key is thrown away once the broker's certificate is signed: nothing else is ever signed by it.
#
# Environment: RCTC_KAFKA_CACHE (default ~/.cache/rctc/kafka), KAFKA_HEAP_OPTS, KAFKA_GC_OPTS, RCTC_KAFKA_START_TIMEOUT,
# RCTC_KAFKA_REAUTH_MS (how long a SASL session lasts before re-authentication, default 600000: 10 minutes;
# read when a directory is formatted).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
cache="${RCTC_KAFKA_CACHE:-$HOME/.cache/rctc/kafka}/$version"
libs="$cache/libs"

die() { echo "kafka-local: $*" >&2; exit 1; }

fetch() {
  if [[ -f "$libs/.complete" ]]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to resolve Kafka $version from Maven Central"
  command -v java >/dev/null || die "a JDK (java 17+) is needed to run Kafka $version"
  echo "kafka-local: resolving Apache Kafka $version from Maven Central into $libs" >&2
  rm -rf "$libs.tmp"; mkdir -p "$cache"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >"$cache.mvn.log" 2>&1 || { cat "$cache.mvn.log" >&2; die "Maven could not resolve Kafka $version"; }
  touch "$libs.tmp/.complete"
  rm -rf "$libs" && mv "$libs.tmp" "$libs"
}

# A certificate authority and the broker's certificate, made once per data directory (make-pki.sh, which
# docker-compose's init uses too).
make_pki() {
  "$here/make-pki.sh" "$1/tls"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir="" port="9092" controller_port="" plaintext="" overrides=()
  while (($#)); do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      --controller-port) controller_port="$2"; shift 2 ;;
      --plaintext) plaintext=1; shift ;;
      --set) [[ "${2:-}" == *=* ]] || die "--set needs KEY=VALUE"; overrides+=("$2"); shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -n "$dir" ]] || die "start needs --dir"
  [[ "$port" == 0 ]] && port="$(free_port)"
  [[ -n "$controller_port" ]] || controller_port="$(free_port)"
  [[ "${RCTC_KAFKA_REAUTH_MS:-600000}" =~ ^[1-9][0-9]*$ ]] || die "RCTC_KAFKA_REAUTH_MS is a number of milliseconds"
  fetch
  mkdir -p "$dir" && chmod 700 "$dir"
  dir="$(cd "$dir" && pwd)"
  if status --dir "$dir"; then die "a broker already runs from $dir (pid $(cat "$dir/broker.pid"))"; fi

  make_pki "$dir"
  if [[ ! -s "$dir/admin.password" ]]; then
    (umask 077 && openssl rand -hex 24 >"$dir/admin.password")
  fi
  local admin_password; admin_password="$(cat "$dir/admin.password")"
  # Ports are fixed when the directory is formatted; a restart reuses them so clients reconnect.
  if [[ -f "$dir/server.properties" ]]; then
    port="$(sed -n 's/^advertised.listeners=CLIENT:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.properties")"
    [[ -n "$port" ]] || die "$dir was made by an older, plaintext version of this script: remove it (make clean)"
    # A restart keeps what the directory was made as: asking for the other kind is a mistake, said at once.
    local made_plaintext=""
    grep -q '^listener.security.protocol.map=CLIENT:PLAINTEXT' "$dir/server.properties" && made_plaintext=1
    [[ "$made_plaintext" == "$plaintext" ]] || die "$dir was made $([[ -n "$made_plaintext" ]] && echo plaintext || echo secured); it is not changed on restart"
  else
    (umask 077 && sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" -e "s#@DATA_DIR@#$dir#g" \
      -e "s#@LISTEN_HOST@#127.0.0.1#g" -e "s#@ADVERTISED_HOST@#127.0.0.1#g" \
      -e "s#@ADMIN_PASSWORD@#$admin_password#g" "$here/server.properties.template" >"$dir/server.properties")
    if [[ -n "${RCTC_KAFKA_REAUTH_MS:-}" ]]; then
      overrides+=("connections.max.reauth.ms=$RCTC_KAFKA_REAUTH_MS")
    fi
    # Java reads a properties file top to bottom and the last value of a key wins: what follows overrides.
    if [[ -n "$plaintext" ]]; then
      { echo; cat "$here/plaintext-baseline.properties"; } >>"$dir/server.properties"
    fi
    if ((${#overrides[@]})); then
      { echo; echo "# --set at the first start"; printf '%s\n' "${overrides[@]}"; } >>"$dir/server.properties"
    fi
  fi
  local cp="$libs/*"
  if [[ ! -f "$dir/log/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    # The admin's SCRAM credential is part of the formatted metadata, so the broker and the controller can
    # authenticate to each other (as admin) from their very first connection.
    java -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$cp" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]" >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; die "formatting $dir failed"; }
  fi

  # A small heap and few GC threads: this broker shares two cores with every service and the tests.
  local heap="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
  # G1 with a 20 ms pause goal: ZGC (pauses under a millisecond) gave no better transaction tail here in an
  # A/B (docs/performance.md, sixth round) for the same CPU. Its GC pauses go to gc.log: a pause stops every
  # hop at once, and the benchmark keeps the file.
  local gc="${KAFKA_GC_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1}"
  # Emptied here, not by the background job's own redirection: that runs after the wait below has begun,
  # which on a restart found the previous run's "Kafka Server started" and returned before the broker served.
  : >"$dir/broker.log"
  # shellcheck disable=SC2086
  nohup java $heap $gc \
    -Xlog:gc:file="$dir/gc.log":uptime,time -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/broker.pid"

  local timeout="${RCTC_KAFKA_START_TIMEOUT:-90}" waited=0
  until grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      tail -n 30 "$dir/broker.log" >&2; rm -f "$dir/broker.pid"; die "the broker exited during start"
    fi
    ((waited >= timeout * 10)) && { stop --dir "$dir"; die "the broker did not start within ${timeout}s"; }
    sleep 0.1; waited=$((waited + 1))
  done
  echo "127.0.0.1:$port"
}

status() {
  [[ "${1:-}" == "--dir" && -n "${2:-}" ]] || die "status needs --dir"
  [[ -f "$2/broker.pid" ]] && kill -0 "$(cat "$2/broker.pid")" 2>/dev/null
}

stop() {
  [[ "${1:-}" == "--dir" && -n "${2:-}" ]] || die "stop needs --dir"
  local pidfile="$2/broker.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # A controlled shutdown of one node takes a few seconds; past 30 s it is stuck.
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  fetch) fetch; echo "$libs" ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  version) echo "$version" ;;
  *) die "usage: kafka-local.sh fetch|start --dir D [--port P] [--set K=V]... [--plaintext]|stop --dir D|status --dir D|version" ;;
esac
