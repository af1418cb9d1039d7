#!/usr/bin/env bash
# docker-compose's one-shot `init` service (root, in the project's image): every secret the other containers
# mount, made on the first `docker compose up` and kept in their volumes, so later runs change nothing.
#
#   init.sh                         make what is missing
#   init.sh --rotate NAME ...       replace a service's Kafka password (NAME: gateway, router, ...) or the
#                                   tracker's internal credential (NAME: internal-token); then run `bootstrap`
#                                   and restart the services concerned (deploy/README.md, Rotation)
#
# Writes, under RCTC_INIT_ROOT (default /var/lib/rctc; one compose volume per directory):
#   kafka/     the broker's: tls/ca.pem, tls/broker.pem (deploy/kafka/make-pki.sh, as for the local broker),
#              admin.password, server.properties (deploy/kafka/server.properties.template, the local broker's
#              own), kafka-start.sh (its command), admin-client.properties (the healthcheck's connection)
#   admin/     the bootstrap's: admin.password, ca.pem, registry.yaml (the demo registry with the auditor's
#              public key added, as `make run` does)
#   secrets/<service>/   each service's alone: kafka.password, ca.pem; the auditor's signing.key; the
#              internal-token of the gateway, the tracker and the console
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${RCTC_INIT_ROOT:-/var/lib/rctc}"
registry="${RCTC_INIT_REGISTRY:-$deploy/registry/demo.yaml}"
broker="$root/kafka"
admin="$root/admin"
secrets="$root/secrets"
# Where the broker's container mounts its volume (docker-compose.yml): the paths inside server.properties.
broker_data_dir=/var/lib/rctc/kafka
# The services with a principal of their own (the list the ACLs are generated for). A plain assignment first:
# one inside an array would not stop the script if python failed.
names="$(python -c 'from services.common.acls import SERVICES; print(*SERVICES)')"
read -r -a services <<<"$names"

rotate=()
while (($#)); do
  case "$1" in
    --rotate) rotate+=("${2:?--rotate needs a name}"); shift 2 ;;
    *) echo "init: unknown argument $1" >&2; exit 2 ;;
  esac
done
for name in "${rotate[@]}"; do
  case " ${services[*]} internal-token " in
    *" $name "*) ;;
    *) echo "init: --rotate $name: not a service nor internal-token" >&2; exit 2 ;;
  esac
done
rotating() { [[ " ${rotate[*]} " == *" $1 "* ]]; }

# A secret file, created 0600 (never briefly wider), from the output of a command.
put() {
  local file="$1"; shift
  (umask 077 && "$@" >"$file.tmp") && mv "$file.tmp" "$file"
}
missing() { [[ ! -s "$1" ]]; }

mkdir -p "$broker" "$admin" && chmod 700 "$broker" "$admin"

# The broker: TLS for the name the other containers use (`kafka`) and for 127.0.0.1, where it reaches its own
# controller; the bootstrap admin, its only super user.
"$deploy/kafka/make-pki.sh" "$broker/tls" "IP:127.0.0.1,DNS:localhost,DNS:kafka"
missing "$broker/admin.password" && put "$broker/admin.password" openssl rand -hex 24
admin_password="$(cat "$broker/admin.password")"
# The local broker's template, bound to every interface of the container (only the client listener: the
# controller's stays on its loopback) and advertised as `kafka`. Rendered every run, so a changed template
# applies at the next start; the data directory is formatted once (deploy/compose/kafka-start.sh).
put "$broker/server.properties" sed -e "s#@LISTEN_HOST@#0.0.0.0#g" -e "s#@ADVERTISED_HOST@#kafka#g" \
  -e "s#@PORT@#9092#g" -e "s#@CONTROLLER_PORT@#9093#g" -e "s#@DATA_DIR@#$broker_data_dir#g" \
  -e "s#@ADMIN_PASSWORD@#$admin_password#g" "$deploy/kafka/server.properties.template"
put "$broker/kafka-start.sh" cat "$deploy/compose/kafka-start.sh"
put "$broker/admin-client.properties" printf '%s\n' \
  "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
  "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin_password\";" \
  "ssl.truststore.type=PEM" "ssl.truststore.location=$broker_data_dir/tls/ca.pem"

# The bootstrap connects as the admin and trusts the broker's CA.
put "$admin/admin.password" cat "$broker/admin.password"
put "$admin/ca.pem" cat "$broker/tls/ca.pem"

# Each service: its own Kafka password (installed on the broker by `bootstrap`), the CA to trust.
for service in "${services[@]}"; do
  dir="$secrets/$service"
  mkdir -p "$dir" && chmod 700 "$dir"
  put "$dir/ca.pem" cat "$broker/tls/ca.pem"
  if missing "$dir/kafka.password" || rotating "$service"; then put "$dir/kafka.password" openssl rand -hex 32; fi
done

# The credential of the tracker's internal API (services/common/internal.py), which the gateway and the console
# call it with: one random value, kept in the gateway's volume and copied into the tracker's and the console's at
# every run (a volume set made before the console existed gets the value the other two already share).
if missing "$secrets/gateway/internal-token" || rotating internal-token; then
  put "$secrets/gateway/internal-token" openssl rand -hex 32
fi
for service in tracker console; do
  put "$secrets/$service/internal-token" cat "$secrets/gateway/internal-token"
done

# The auditor's signing key, made once and never replaced here (its checkpoints would no longer verify; key
# rotation is in deploy/README.md), and its public half for the registry.
if missing "$secrets/auditor/signing.key"; then
  rctc audit keygen --out "$secrets/auditor/signing.key" | sed -n '/^audit:/,$p' >"$admin/audit-keys.yaml"
fi
# The registry `bootstrap` applies: the chosen one, with the auditor's key unless it names audit keys itself.
if grep -q '^audit:' "$registry"; then
  put "$admin/registry.yaml" cat "$registry"
else
  put "$admin/registry.yaml" cat "$registry" <(printf '\n# Added by deploy/compose/init.sh: its auditor'"'"'s key.\n') "$admin/audit-keys.yaml"
fi

# Owners: the broker's files to the user its container runs as (docker-compose.yml: 1000, the apache/kafka image's
# appuser), the rest to this project's image's (uid 10001, the Dockerfile). Each container mounts only its own volume, so the files of one
# service are out of the others' reach whatever their owner.
if [[ "$(id -u)" == 0 ]]; then
  chown -R 1000:1000 "$broker"
  chown -R 10001 "$admin" "$secrets"
fi
echo "init: secrets ready under $root" >&2
