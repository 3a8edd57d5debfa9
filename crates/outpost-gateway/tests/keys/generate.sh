#!/bin/sh
# Regenerates the test keys of tests/keys.rs (committed, generated once:
# they sign test tokens only and guard nothing). Needs openssl and python3.
set -eu
cd "$(dirname "$0")"
openssl genpkey -algorithm ed25519 -out ed-a.pem
openssl genpkey -algorithm ed25519 -out ed-b.pem
openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048 -out rsa-a.pem
for k in ed-a ed-b rsa-a; do openssl pkey -in $k.pem -pubout -out $k.pub.pem; done
# JWKs of the public keys: Ed25519's x is the SPKI's last 32 bytes; RSA's
# n and e from openssl's modulus and exponent.
ed_x() { openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | python3 -c 'import sys,base64;print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())'; }
rsa_n=$(openssl rsa -pubin -in rsa-a.pub.pem -noout -modulus | cut -d= -f2 | python3 -c 'import sys,base64;print(base64.urlsafe_b64encode(bytes.fromhex(sys.stdin.read().strip())).rstrip(b"=").decode())')
rsa_e=$(python3 -c 'import base64;print(base64.urlsafe_b64encode((65537).to_bytes(3,"big")).rstrip(b"=").decode())')
printf '{"kty":"OKP","crv":"Ed25519","kid":"ed-a","use":"sig","alg":"EdDSA","x":"%s"}\n' "$(ed_x ed-a.pub.pem)" > ed-a.jwk.json
printf '{"kty":"OKP","crv":"Ed25519","kid":"ed-b","use":"sig","x":"%s"}\n' "$(ed_x ed-b.pub.pem)" > ed-b.jwk.json
printf '{"kty":"RSA","kid":"rsa-a","use":"sig","alg":"RS256","n":"%s","e":"%s"}\n' "$rsa_n" "$rsa_e" > rsa-a.jwk.json
# ECDSA: P-256 (ES256) and P-384 (ES384), private keys in PKCS#8 (what
# jsonwebtoken reads), and a P-521 key the gateway refuses by name.
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out ec256-a.pem
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-384 -out ec384-a.pem
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-521 -out ec521-a.pem
for k in ec256-a ec384-a ec521-a; do openssl pkey -in $k.pem -pubout -out $k.pub.pem; done
# The P-256 key in SEC1 form (`BEGIN EC PRIVATE KEY`), which `--key` refuses
# with the conversion to PKCS#8.
openssl ec -in ec256-a.pem -out ec256-a.sec1.pem
