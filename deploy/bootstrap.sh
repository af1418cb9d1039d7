#!/usr/bin/env bash
# The Kafka bootstrap of docker-compose (service `bootstrap`) and Kubernetes (Job `rctc-bootstrap`), run as the
# cluster's admin (RCTC_KAFKA__USERNAME=admin, its password from RCTC_KAFKA__PASSWORD_FILE). In order:
#   1. the topics of services/common/topics.yaml;
#   2. each service's principal `service-<name>` with the password in $RCTC_BOOTSTRAP_SECRETS/<name>/kafka.password
#      (made where the secret lives: compose's init, the operator's Kubernetes Secret; installed as given, so a
#      second run changes nothing and a rotated file takes effect);
#   3. the registry in $RCTC_BOOTSTRAP_REGISTRY, with the agency topics and every ACL it implies: the ACLs are
#      what lets each principal in at all (allow.everyone.if.no.acl.found=false), so they are never skipped.
# Every step is idempotent: run it again after changing the registry or a password.
# RCTC_BOOTSTRAP_REPLICATION_FACTOR: 1 for a single broker (compose); unset, the topics' own (production).
set -euo pipefail

secrets="${RCTC_BOOTSTRAP_SECRETS:?the directory holding <service>/kafka.password}"
registry="${RCTC_BOOTSTRAP_REGISTRY:?the registry file to apply}"
replication=()
[[ -n "${RCTC_BOOTSTRAP_REPLICATION_FACTOR:-}" ]] && replication=(--replication-factor "$RCTC_BOOTSTRAP_REPLICATION_FACTOR")

rctc topics apply "${replication[@]}"
# The services with a principal of their own: the list the ACLs are generated for.
names="$(python -c 'from services.common.acls import SERVICES; print(*SERVICES)')"
for service in $names; do
  rctc service credentials "$service" --password-file "$secrets/$service/kafka.password" --existing
done
rctc registry apply "$registry" "${replication[@]}"
