// Package netwatch tells when the machine's network changes: an address
// added or removed, a route changed, an interface gone. The agent's QUIC
// client uses it to move its connections to the new path when a PC roams
// from one network to another.
//
// On Linux it listens to rtnetlink (address and route groups of IPv4 and
// IPv6); on Windows to NotifyUnicastIpAddressChange and
// NotifyIpInterfaceChange; elsewhere, and on Linux when netlink cannot be
// opened, it polls the interface addresses. A burst of notifications (an
// address removal brings its routes down with it) is reported once, after
// the network has been quiet for a moment.
//
// Unreachable classifies the send errors that mean the path a socket was
// using is gone, so that a sender can treat them as loss and move on.
package netwatch
