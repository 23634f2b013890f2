#!/usr/bin/env bash
# Make a local development CA and a wildcard leaf certificate for *.example.com.
#
#   certs/make-dev-certs.sh           # create if missing or expiring within a day
#   certs/make-dev-certs.sh --force   # always regenerate everything
#
# Output (certs/dev/, git-ignored):
#   ca.key  ca.crt                          "authgate dev CA", EC P-256, 10 years
#   example.com.key  example.com.crt        leaf, EC P-256, 825 days, signed by the CA
#   example.com.fullchain.crt               leaf + CA
# Private keys are written with mode 0600. Development use only.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="${SCRIPT_DIR}/dev"

FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force|-f) FORCE=1 ;;
    -h|--help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) echo "make-dev-certs: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

command -v openssl >/dev/null 2>&1 || { echo "make-dev-certs: openssl not found in PATH" >&2; exit 1; }

CA_KEY="${OUT_DIR}/ca.key"
CA_CRT="${OUT_DIR}/ca.crt"
LEAF_KEY="${OUT_DIR}/example.com.key"
LEAF_CRT="${OUT_DIR}/example.com.crt"
FULLCHAIN="${OUT_DIR}/example.com.fullchain.crt"

if [[ "$FORCE" -eq 0 && -f "$CA_CRT" && -f "$LEAF_CRT" && -f "$LEAF_KEY" && -f "$CA_KEY" && -f "$FULLCHAIN" ]] \
   && openssl x509 -in "$LEAF_CRT" -noout -checkend 86400 >/dev/null 2>&1 \
   && openssl verify -CAfile "$CA_CRT" "$LEAF_CRT" >/dev/null 2>&1; then
  echo "make-dev-certs: ${OUT_DIR} is up to date (leaf valid for more than 1 day); use --force to regenerate"
  exit 0
fi

mkdir -p "$OUT_DIR"
chmod 0700 "$OUT_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
umask 077

# --- CA -------------------------------------------------------------------
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key"
openssl pkcs8 -topk8 -nocrypt -in "$WORK/ca.key" -out "$WORK/ca.p8.key"
cat > "$WORK/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
O = authgate
CN = authgate dev CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
openssl req -new -x509 -sha256 -days 3650 -key "$WORK/ca.p8.key" \
  -config "$WORK/ca.cnf" -out "$WORK/ca.crt"

# --- leaf -----------------------------------------------------------------
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/leaf.key"
openssl pkcs8 -topk8 -nocrypt -in "$WORK/leaf.key" -out "$WORK/leaf.p8.key"
cat > "$WORK/leaf.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = authgate
CN = *.example.com
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = serverAuth
subjectAltName = DNS:*.example.com, DNS:example.com, DNS:*.preview.example.com, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
CNF
openssl req -new -sha256 -key "$WORK/leaf.p8.key" -config "$WORK/leaf.cnf" -out "$WORK/leaf.csr"
openssl x509 -req -sha256 -days 825 -in "$WORK/leaf.csr" \
  -CA "$WORK/ca.crt" -CAkey "$WORK/ca.p8.key" \
  -set_serial "0x$(openssl rand -hex 16)" \
  -extfile "$WORK/leaf.cnf" -extensions v3_leaf -out "$WORK/leaf.crt" 2>/dev/null

openssl verify -CAfile "$WORK/ca.crt" "$WORK/leaf.crt" >/dev/null

# --- install ----------------------------------------------------------------
install -m 0600 "$WORK/ca.p8.key"   "$CA_KEY"
install -m 0644 "$WORK/ca.crt"      "$CA_CRT"
install -m 0600 "$WORK/leaf.p8.key" "$LEAF_KEY"
install -m 0644 "$WORK/leaf.crt"    "$LEAF_CRT"
cat "$WORK/leaf.crt" "$WORK/ca.crt" > "$WORK/fullchain.crt"
install -m 0644 "$WORK/fullchain.crt" "$FULLCHAIN"

echo "make-dev-certs: wrote CA and *.example.com certificate to ${OUT_DIR} (leaf expires $(openssl x509 -in "$LEAF_CRT" -noout -enddate | cut -d= -f2))"
