#!/usr/bin/env bash
# DEMO ONLY. Regenerates the committed example PKI in this folder with openssl: a CA, Envoy's
# server certificate for localhost/127.0.0.1, and client certificates for the two example
# workloads, each carrying its SPIFFE ID as a URI SAN. Valid for 10 years.
#
# The private keys are published in the repository, so these certificates prove nothing to
# anyone: never trust this CA outside the demo. The tests do not use them; they generate a
# fresh PKI at run time (tests/support/pki.rs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

days=3650
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ec_key ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -out ca.pem \
    -subj "/O=sessiongate demo (NOT FOR PRODUCTION)/CN=sessiongate demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME CN SAN EKU
leaf() {
    local name=$1 cn=$2 san=$3 eku=$4
    ec_key "$name-key.pem"
    openssl req -new -key "$name-key.pem" -out "$name.csr" \
        -subj "/O=sessiongate demo (NOT FOR PRODUCTION)/CN=$cn"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=$eku" \
        "subjectAltName=$san" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -sha256 -days "$days" -extfile "$name.ext" -out "$name.pem"
    rm -f "$name.csr" "$name.ext"
}

leaf server localhost "DNS:localhost,IP:127.0.0.1" serverAuth
leaf frontend frontend "URI:spiffe://cluster.local/ns/shop/sa/frontend" clientAuth
leaf batch batch "URI:spiffe://cluster.local/ns/shop/sa/batch" clientAuth
rm -f ca.srl
