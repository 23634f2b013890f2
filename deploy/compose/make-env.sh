#!/usr/bin/env bash
# Writes deploy/.env for deploy/docker-compose.yaml: fresh random secrets for the cookie keys,
# the OIDC client secret (shared by the gateways and the development provider) and every
# Redis and Sentinel password. Compose reads deploy/.env by itself. Never commit it
# (.gitignore has it). Keeps an existing file unless --force is given.
set -euo pipefail
env_file="$(cd "$(dirname "$0")/.." && pwd)/.env"
if [[ -e "$env_file" && "${1:-}" != "--force" ]]; then
  echo "$env_file exists (use --force to replace it)"
  exit 0
fi
umask 077
{
  echo "AUTHGATE_COOKIE_SECRETS=$(openssl rand -base64 32)"
  echo "CORP_CLIENT_SECRET=$(openssl rand -hex 24)"
  for v in REDIS_ADMIN_PASSWORD REDIS_REPLICATION_PASSWORD REDIS_SENTINEL_MON_PASSWORD \
           AUTHGATE_REDIS_PASSWORD SENTINEL_PASSWORD; do
    echo "$v=$(openssl rand -hex 24)"
  done
} > "$env_file"
echo "wrote $env_file"
