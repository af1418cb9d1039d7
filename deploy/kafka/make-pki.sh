#!/usr/bin/env bash
# A certificate authority and a broker's certificate, made with openssl: the TLS half of the broker's security
# for the local broker (kafka-local.sh) and docker-compose (deploy/compose/init.sh), so both hold the same kind
# of files. Does nothing when DIR already holds them.
#
#   make-pki.sh DIR [SAN]     SAN defaults to IP:127.0.0.1,DNS:localhost
#
# Makes, under DIR (mode 0700):
#   ca.pem       the certificate authority's certificate: the clients' trust store (RCTC_KAFKA__CA_FILE)
#   broker.pem   the broker's unencrypted PKCS#8 key followed by its certificate (mode 0600)
# The CA's own key is thrown away once the broker's certificate is signed: nothing else is ever signed by it.
set -euo pipefail

tls="${1:?usage: make-pki.sh DIR [SAN]}"
# The broker connects to itself over TLS with hostname verification on, at 127.0.0.1 (its controller
# listener): every SAN list keeps IP:127.0.0.1 beside the names clients use.
san="${2:-IP:127.0.0.1,DNS:localhost}"

[[ -f "$tls/ca.pem" && -f "$tls/broker.pem" ]] && exit 0
command -v openssl >/dev/null || { echo "make-pki: openssl is needed to make the broker's TLS certificates" >&2; exit 1; }
rm -rf "$tls" && mkdir -p "$tls" && chmod 700 "$tls"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# EC P-256 keys; genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), the only form the broker's PEM keystore reads.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -sha256 -days 3650 -subj "/CN=RCTC Kafka CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$tls/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/broker.key" 2>/dev/null
openssl req -new -key "$work/broker.key" -subj "/CN=RCTC Kafka broker" -out "$work/broker.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$work/ext"
openssl x509 -req -in "$work/broker.csr" -CA "$tls/ca.pem" -CAkey "$work/ca.key" -CAserial "$work/ca.srl" -CAcreateserial \
  -days 825 -sha256 -extfile "$work/ext" -out "$work/broker.crt" 2>/dev/null
(umask 077 && cat "$work/broker.key" "$work/broker.crt" >"$tls/broker.pem")
chmod 600 "$tls/broker.pem"
