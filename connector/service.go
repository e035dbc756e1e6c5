package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// service is an internal service the connector dials for streams.
type service struct {
	name   string
	addr   string
	cfg    ServiceConfig
	tls    *tls.Config  // nil: plain TCP
	active atomic.Int64 // streams spliced now
	// Totals for the status page: streams served and refused.
	streams, errors atomic.Int64
}

func newService(sc ServiceConfig, cfg Config) (*service, error) {
	s := &service{name: sc.Name, addr: sc.Address, cfg: sc}
	if sc.TLS == nil {
		return s, nil
	}
	conf := certs.ClientConfig(nil)
	conf.MinVersion = tls.VersionTLS12 // cores are often older servers
	conf.ServerName = sc.TLS.ServerName
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(sc.Address)
	}
	switch {
	case sc.TLS.Pin != nil:
		pin := *sc.TLS.Pin
		conf.InsecureSkipVerify = true // replaced by the pin check below
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || auth.PinOfCert(cs.PeerCertificates[0]) != pin {
				return errors.New("service certificate does not match its pin")
			}
			return nil
		}
	case sc.TLS.RootCAs != nil:
		conf.RootCAs = sc.TLS.RootCAs
	case sc.TLS.CAFile != "":
		cas, err := certs.LoadCerts(sc.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		for _, ca := range cas {
			conf.RootCAs.AddCert(ca)
		}
	}
	s.tls = conf
	return s, nil
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dial connects to the service within timeout, TLS handshake included.
func (s *service) dial(ctx context.Context, dial dialFunc, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	if s.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, s.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", s.addr, err)
	}
	return tc, nil
}
