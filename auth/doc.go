// Package auth answers "who is this peer, and what may it do?".
//
// It holds the identity rules that the gateway and the connector share: the
// principal behind a verified agent certificate (tenant and device, named in
// a URI SAN of the form sekisho://TENANT/device/DEVICE), the SPKI pins that
// name connector keys, tenant and service name syntax, and chain verification
// of agent certificates against one tenant's trust bundle.
//
// auth imports no other package of sekisho.
package auth
