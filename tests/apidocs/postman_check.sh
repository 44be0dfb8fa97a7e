#!/usr/bin/env bash
# Convert both OpenAPI documents of a running daemon into Postman collections with
# openapi-to-postmanv2 (from the npm registry; npx fetches it once) and check the result.
# Usage: tests/apidocs/postman_check.sh [DAEMON_URL]   (needs ESB_ADMIN_TOKEN for the admin doc)
set -euo pipefail
url="${1:-${ESB_ADMIN_URL:-http://127.0.0.1:8080}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsS "$url/openapi.json" -o "$work/inbound.json"
curl -fsS -H "Authorization: Bearer ${ESB_ADMIN_TOKEN:?set ESB_ADMIN_TOKEN}" \
     "$url/admin/openapi.json" -o "$work/admin.json"
for doc in inbound admin; do
  npx --yes openapi-to-postmanv2@5 -s "$work/$doc.json" -o "$work/$doc.postman.json" -p >/dev/null
  python3 - "$work/$doc.postman.json" "$doc" <<'PY'
import json, sys
col = json.load(open(sys.argv[1]))
assert col["info"]["schema"].startswith("https://schema.getpostman.com/json/collection/v2"), col["info"]
def count(items):
    return sum(count(i["item"]) if "item" in i else 1 for i in items)
n = count(col["item"])
assert n > 0, "no requests in the collection"
print(f"{sys.argv[2]}: a Postman v2.1 collection with {n} requests")
PY
done
