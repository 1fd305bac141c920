#!/bin/sh
# Renames the keys whose names changed for Redis Cluster (README "Scaling
# out"): a standalone Redis written by an earlier voxpipe, before the new
# one starts. Idempotent (RENAMENX: a key already moved is left alone).
#
#   deploy/migrate-keys.sh [PREFIX]        # the Redis on localhost:6379
#   REDIS="-h redis.internal -p 6379" deploy/migrate-keys.sh acme:
#   (a password: REDISCLI_AUTH, as redis-cli reads it)
#
#   {prefix}webhook:event:<id>         -> {{prefix}webhook:outbox}:event:<id>
#   {prefix}webhook:dead               -> {{prefix}webhook:outbox}:dead
#   {prefix}campaign:<id>:<part>       -> {{prefix}campaign:<id>}:<part>
#   {prefix}prompt:<...>:version|history -> {{prefix}prompt:<...>}:version|history
set -eu
prefix="${1:-}"
cli() { redis-cli ${REDIS:-} "$@"; }
rename() { cli RENAMENX "$1" "$2" >/dev/null; }
cli --scan --pattern "${prefix}webhook:event:*" | while read -r key; do
    rename "$key" "{${prefix}webhook:outbox}:event:${key#"${prefix}webhook:event:"}"
done
if [ "$(cli EXISTS "${prefix}webhook:dead")" = "1" ]; then
    rename "${prefix}webhook:dead" "{${prefix}webhook:outbox}:dead"
fi
for part in entries due leases attempts done; do
    cli --scan --pattern "${prefix}campaign:*:${part}" | while read -r key; do
        owner="${key%":${part}"}"
        rename "$key" "{${owner}}:${part}"
    done
done
for part in version history; do
    cli --scan --pattern "${prefix}prompt:*:${part}" | while read -r key; do
        owner="${key%":${part}"}"
        rename "$key" "{${owner}}:${part}"
    done
done
echo "keys renamed to the cluster layout under prefix '${prefix}'"
