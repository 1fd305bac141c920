#!/bin/sh
# A self-signed certificate for deploy/compose.yaml's proxy (for a test
# deployment: browsers warn; use your own certificate in production).
set -eu
dir="$(dirname "$0")/certs"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=${1:-localhost}" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
echo "wrote $dir/cert.pem and $dir/key.pem"
