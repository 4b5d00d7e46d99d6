#!/bin/sh
# Test scaffolding of the rsyslog scenario (not part of the role): a
# throwaway CA and ECDSA P-256 certificates laid out like roles/pki's, made on
# the controller with openssl. Usage: make-test-pki.sh DIR HOST...
#   DIR/ca.crt                    the test CA
#   DIR/<host>.crt, <host>.key    one per host, SAN DNS:<host>, server+client auth
#   DIR/outsider.crt/.key         signed by the CA, a name no relay permits
#   DIR/rogue.crt/.key            SAN DNS:shipper, signed by another CA
# Idempotent: existing files are kept.
set -eu
dir="$1"; shift
mkdir -p "$dir"; cd "$dir"
umask 077

ca() {  # ca NAME CN
  [ -f "$1.crt" ] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 30 -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() {  # leaf FILE NAME CA
  [ -f "$1.crt" ] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf 'subjectAltName=DNS:%s\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.crt"
  rm -f "$1.csr" "$1.ext"
}

ca ca "rsyslog Molecule Test CA"
ca rogue-ca "Some Other CA"
for host in "$@"; do leaf "$host" "$host" ca; done
leaf outsider outsider ca
leaf rogue shipper rogue-ca
chmod 0644 ./*.crt
