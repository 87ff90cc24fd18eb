#!/usr/bin/env bash
# A private CA and the certificates for Mosquitto's TLS listener, made with the openssl CLI.
#
#   deploy/mosquitto/make-certs.sh OUT_DIR BROKER_NAME [MORE_NAMES...]
#   CLIENTS="gw-a1 gw-b1" deploy/mosquitto/make-certs.sh OUT_DIR mqtt.example.org
#
# BROKER_NAMEs are the DNS names or IP addresses clients dial; each goes into the server
# certificate's subjectAltName, which clients check. CLIENTS also makes a client certificate
# per gateway with CN = the gateway id (for require_certificate + use_identity_as_username).
# Keep ca.key offline: whoever holds it can mint certificates the broker trusts.
set -euo pipefail

if (($# < 2)); then
  echo "usage: $0 OUT_DIR BROKER_NAME [MORE_NAMES...]" >&2
  exit 2
fi
out=$1
shift
broker=$1
san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}
days=${DAYS:-825}  # the longest validity clients (Apple, browsers) accept for a leaf

mkdir -p "$out"
cd "$out"
umask 077
curve=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

openssl req -x509 "${curve[@]}" -keyout ca.key -out ca.crt -days 3650 -sha256 \
  -subj "/CN=civicwatch local CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

leaf() {  # leaf NAME CN EXTENSIONS
  openssl req "${curve[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days "$days" -sha256 -extfile <(printf '%b' "$3") 2>/dev/null
  rm -f "$1.csr"
}

common="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
common+="subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
leaf server "$broker" "${common}extendedKeyUsage=serverAuth\nsubjectAltName=$san\n"
for client in ${CLIENTS:-}; do
  leaf "$client" "$client" "${common}extendedKeyUsage=clientAuth\n"
done
chmod 644 ./*.crt
echo "$out: ca.crt server.crt server.key${CLIENTS:+ and client certificates for $CLIENTS}"
