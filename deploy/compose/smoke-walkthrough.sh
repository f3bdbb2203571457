#!/usr/bin/env bash
# CI's smoke walk-through against a running bank (compose with deploy/compose/smoke.yaml,
# or `make run`): two customers open EUR accounts, the operator deposits into one through
# its client_credentials, a transfer moves 25.50 EUR, and the balances must say so.
# Exits non-zero at the first step that does not hold. Needs curl and python3.
#
#   SMOKE_ACCOUNTS_URL / SMOKE_TRANSACTIONS_URL   default http://127.0.0.1:8001 / :8002
#   SMOKE_OPERATOR_CLIENT_ID / _SECRET            default compose's dev operator client
#   SMOKE_READY_SECONDS                           how long the services may take to be ready
#   SMOKE_TRANSFER_SECONDS                        how long the transfer may take to end
#                                                 (the worker may still be starting)
set -euo pipefail

A=${SMOKE_ACCOUNTS_URL:-http://127.0.0.1:8001}
T=${SMOKE_TRANSACTIONS_URL:-http://127.0.0.1:8002}
OPERATOR_ID=${SMOKE_OPERATOR_CLIENT_ID:-operator}
OPERATOR_SECRET=${SMOKE_OPERATOR_CLIENT_SECRET:-sagabank-dev-operator-secret}
READY_SECONDS=${SMOKE_READY_SECONDS:-300}
TRANSFER_SECONDS=${SMOKE_TRANSFER_SECONDS:-180}
RUN=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')  # fresh customers each run

field() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }
posted() { python3 -c "import sys, json; print(json.load(sys.stdin)['balances']['posted_minor'])"; }
key() { python3 -c 'import uuid; print(uuid.uuid4())'; }
fail() { echo "smoke: $*" >&2; exit 1; }
# curl that fails on an HTTP error status and shows the body it got.
call() {
  local body status
  body=$(mktemp)
  status=$(curl -sS -o "$body" -w '%{http_code}' "$@") || { rm -f "$body"; fail "curl $*"; }
  if [ "$status" -ge 400 ]; then
    echo "smoke: HTTP $status from $*" >&2; cat "$body" >&2; rm -f "$body"; exit 1
  fi
  cat "$body"; rm -f "$body"
}

echo "smoke: waiting up to ${READY_SECONDS}s for accounts and transactions to be ready"
deadline=$((SECONDS + READY_SECONDS))
for url in "$A/readyz" "$T/readyz"; do
  until curl -sf -o /dev/null "$url"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$url not ready after ${READY_SECONDS}s"
    sleep 2
  done
done

echo "smoke: customers register and sign in"
for who in alice bob; do
  call -X POST "$A/v1/customers" -H 'content-type: application/json' \
    -d "{\"email\": \"$who-$RUN@example.com\", \"password\": \"smoke test $who $RUN\", \"display_name\": \"$who\"}" >/dev/null
done
token_of() {
  call -X POST "$A/v1/oauth/token" -d grant_type=password -d "username=$1-$RUN@example.com" \
    --data-urlencode "password=smoke test $1 $RUN" | field access_token
}
ALICE_TOKEN=$(token_of alice)
BOB_TOKEN=$(token_of bob)

echo "smoke: each opens an EUR account"
open_account() {
  call -X POST "$A/v1/accounts" -H "Authorization: Bearer $1" \
    -H 'content-type: application/json' -d '{"currency": "EUR"}' | field id
}
ALICE=$(open_account "$ALICE_TOKEN")
BOB=$(open_account "$BOB_TOKEN")

echo "smoke: the operator (client_credentials) deposits 100.00 EUR for Alice"
OPERATOR_TOKEN=$(call -X POST "$A/v1/oauth/token" -u "$OPERATOR_ID:$OPERATOR_SECRET" \
  -d grant_type=client_credentials | field access_token)
call -X POST "$A/v1/accounts/$ALICE/deposits" -H "Authorization: Bearer $OPERATOR_TOKEN" \
  -H 'content-type: application/json' -H "Idempotency-Key: $(key)" \
  -d '{"amount_minor": 10000, "currency": "EUR"}' >/dev/null

echo "smoke: Alice sends Bob 25.50 EUR"
TRANSFER=$(call -X POST "$T/v1/transfers" -H "Authorization: Bearer $ALICE_TOKEN" \
  -H 'content-type: application/json' -H "Idempotency-Key: $(key)" -H 'Prefer: wait=10' \
  -d "{\"source_account_id\": \"$ALICE\", \"target_account_id\": \"$BOB\", \"amount_minor\": 2550, \"currency\": \"EUR\", \"description\": \"smoke $RUN\"}" \
  | field id)
status=pending
deadline=$((SECONDS + TRANSFER_SECONDS))
while [ "$SECONDS" -lt "$deadline" ]; do
  status=$(call "$T/v1/transfers/$TRANSFER" -H "Authorization: Bearer $ALICE_TOKEN" | field status)
  case "$status" in completed | rejected | declined | cancelled | expired) break ;; esac
  sleep 1
done
[ "$status" = completed ] || fail "transfer $TRANSFER ended $status, not completed"

echo "smoke: balances"
posted_of() {
  call "$A/v1/accounts/$1" -H "Authorization: Bearer $2" | posted
}
alice_posted=$(posted_of "$ALICE" "$ALICE_TOKEN")
bob_posted=$(posted_of "$BOB" "$BOB_TOKEN")
[ "$alice_posted" = 7450 ] || fail "Alice holds $alice_posted minor units, not 7450"
[ "$bob_posted" = 2550 ] || fail "Bob holds $bob_posted minor units, not 2550"
echo "smoke: transfer $TRANSFER completed; Alice 7450, Bob 2550 (EUR minor units)"
