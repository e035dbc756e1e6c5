// Package auth answers "who is this peer, and what may it do?".
//
// It holds the identity rules that the gateway and the connector share: the
// principal behind a verified agent certificate (tenant and device, named in
// a URI SAN of the form sekisho://TENANT/device/DEVICE), the SPKI pins that
// name connector keys, tenant and service name syntax, and chain verification
// of agent certificates against one tenant's trust bundle.
//
// It also holds the device registry that the connector owns: enrollment
// tokens, whose text names their tenant so that the gateway can route an
// enrollment without a database (NewToken, ParseToken), and the Store of
// tokens, devices, revoked certificates, audit log and snapshot versions,
// in embedded SQLite or in PostgreSQL shared by several connectors
// (OpenStore). Its schema lives in schema/, one numbered migration per file
// and database.
//
// auth imports no other package of sekisho.
package auth
