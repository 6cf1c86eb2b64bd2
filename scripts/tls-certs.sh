#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with the openssl CLI, into DIR (created):
#   ca.crt/ca.key           the CA the clients are told to trust
#   server.crt/server.key   signed by it, for localhost and 127.0.0.1
#   wrong-host.crt/.key     signed by it, for another host name only (verify-full must refuse)
#   rogue-ca.crt, rogue.crt/rogue.key   another CA and a localhost cert it signed (refused)
#   client.crt/client.key   a client certificate signed by the CA (Redis tls-auth-clients)
# Keys are mode 0600 (PostgreSQL refuses a key others can read). Usage: tls-certs.sh DIR
set -euo pipefail
dir=${1:?usage: tls-certs.sh DIR}
command -v openssl >/dev/null || { echo "tls-certs.sh: openssl is required (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
ca() { # name subject
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.crt" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name ca san usage
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' \
    "$3" "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "floodgate test CA"
ca rogue-ca "some other CA"
leaf server ca "DNS:localhost,IP:127.0.0.1" serverAuth
leaf wrong-host ca "DNS:not-this-host.example" serverAuth
leaf rogue rogue-ca "DNS:localhost,IP:127.0.0.1" serverAuth
leaf client ca "DNS:floodgate-client" clientAuth
chmod 600 ./*.key
