// Command sekisho is the one binary of sekisho, a VPN-less management
// gateway for remote PCs. Its subcommands run each role (gateway,
// connector), manage the minimal per-tenant CA, check config files, and run
// the embedded demo. It only wires: the work lives in the packages.
package main
