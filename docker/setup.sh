#!/bin/sh
# Creates the throwaway PKI the example configs use, under docker/pki:
# a tenant CA for agents, a CA and certificate for the gateway, the
# connector's key (its pin is written into gateway.yaml) and one agent
# certificate. Run from the repository root:  sh docker/setup.sh
set -eu
cd "$(dirname "$0")"
SEKISHO=${SEKISHO:-"go run ../cmd/sekisho"}
GATEWAY_HOST=${GATEWAY_HOST:-localhost}
if [ -e pki ]; then
	echo "docker/pki exists; remove it to start over" >&2
	exit 1
fi
$SEKISHO ca init --tenant acme --dir pki/ca
$SEKISHO ca init --tenant gateway-pki --dir pki/gateway-ca
$SEKISHO ca issue-server --dir pki/gateway-ca --host "$GATEWAY_HOST" --host 127.0.0.1 --out pki/gateway
pin=$($SEKISHO key create pki/connector.key)
$SEKISHO ca issue --dir pki/ca --device pc-0001 --out pki/agent
$SEKISHO catalog keygen pki/catalog.key >/dev/null
umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >pki/admin.token
sed -i.bak "s|- sha256/[A-Za-z0-9+/=]*|- $pin|" gateway.yaml && rm -f gateway.yaml.bak
echo "connector pin $pin written into docker/gateway.yaml"
