#!/usr/bin/env bash
# docker-compose's broker (the apache/kafka image, as its user appuser): format the data directory on the first
# start, then run the broker with the server.properties that deploy/compose/init.sh rendered from the local
# broker's template. The image's own start script is not used: it cannot add the admin's SCRAM credential at
# format time, which the SASL_SSL controller listener needs from the very first connection.
set -euo pipefail

dir=/var/lib/rctc/kafka
if [[ ! -f "$dir/log/meta.properties" ]]; then
  # As kafka-local.sh does. The password is on this one-shot process's command line (Kafka's format tool takes it
  # no other way), inside this container's own process namespace, for the seconds formatting takes.
  /opt/kafka/bin/kafka-storage.sh format -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
    -c "$dir/server.properties" --add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$dir/admin.password")]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$dir/server.properties"
