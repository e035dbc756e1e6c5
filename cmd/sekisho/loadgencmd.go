package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/loadgen"
)

func newLoadgenCmd() *cobra.Command {
	var cfg loadgen.Config
	var caDir, gatewayCA string
	var curves []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "loadgen --target HOST:PORT --ca-dir DIR",
		Short: "Simulate many agents against a gateway, for capacity planning",
		Long: `loadgen mints agent certificates from a tenant CA directory (made by
"sekisho ca init", or written by "sekisho demo --pki-out DIR"), connects the
agents at --connect-rate, then holds them for --duration: idle (with a
keepalive request every --keepalive), or issuing --rate requests per second in
total, a --payload-fraction of them payload downloads. With --reconnect, an
agent whose connection ends (a gateway restart) comes back with jittered
exponential backoff and never gives up while the run lasts. It reports connect
rate, requests per second, latency p50/p90/p99/p99.9, throughput, errors by
kind, and the reconnections (how many, how long, first loss to last return).

Run it as its own process, so that the gateway's measurements are its own.
Over TCP, one process holds at most as many agents as its open-file limit
allows (it raises the soft limit to the hard one); beyond that, run several.
QUIC agents share a UDP socket per --agents-per-socket.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := loadCADir(caDir)
			if err != nil {
				return err
			}
			cfg.CA = ca
			if gatewayCA != "" {
				cas, err := certs.LoadCerts(gatewayCA)
				if err != nil {
					return err
				}
				cfg.RootCAs = x509.NewCertPool()
				for _, c := range cas {
					cfg.RootCAs.AddCert(c)
				}
			}
			if cfg.Curves, err = certs.ParseCurves(curves); err != nil {
				return err
			}
			if limit, err := loadgen.RaiseFileLimit(); err == nil && limit > 0 && cfg.FilesNeeded() > limit {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: open-file limit %d is below the %d files %d agents need; run several processes\n",
					limit, cfg.FilesNeeded(), cfg.Agents)
			}
			if !asJSON {
				cfg.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			sum, err := loadgen.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(sum)
			}
			sum.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "", "gateway host:port")
	f.StringVar(&cfg.ServerName, "server-name", "", "name to check in the gateway's certificate (default: the target's host)")
	f.StringVar(&caDir, "ca-dir", "", "tenant CA directory (ca.pem, ca.key) to mint agent certificates from")
	f.StringVar(&gatewayCA, "gateway-ca", "", "PEM file of the CA that issued the gateway's certificate (default: system roots)")
	f.StringVar(&cfg.Transport, "transport", "tcp", "tcp or quic")
	f.BoolVar(&cfg.HTTP2, "h2", false, "HTTP/2 over TCP (default HTTP/1.1)")
	f.IntVar(&cfg.Agents, "agents", 100, "number of agents")
	f.IntVar(&cfg.FirstAgent, "first-agent", 0, "number of the first agent's device (load-NNNNNN), so that several processes make distinct devices")
	f.Float64Var(&cfg.ConnectRate, "connect-rate", 0, "agents connecting per second (0: as fast as --concurrency allows)")
	f.IntVar(&cfg.Concurrency, "concurrency", 256, "connects in flight at most")
	f.DurationVar(&cfg.Duration, "duration", 0, "how long to hold the agents after the ramp (default 10s)")
	f.Float64Var(&cfg.RequestRate, "rate", 0, "total requests per second (0: agents stay idle)")
	f.DurationVar(&cfg.KeepAlive, "keepalive", 0, "idle agents send a request this often (default 60s; negative: never)")
	f.Float64Var(&cfg.PayloadFraction, "payload-fraction", 0, "share of requests that download the payload, 0 to 1")
	f.StringVar(&cfg.SmallPath, "small-path", "", "path of management requests (default /api/policy)")
	f.StringVar(&cfg.PayloadPath, "payload-path", "", "path of payload downloads (default /patches/KB5031356.msu)")
	f.IntVar(&cfg.SourceIPs, "source-ips", 0, "spread TCP agents over 127.0.0.2.. this many addresses on loopback (default 200)")
	f.IntVar(&cfg.AgentsPerSocket, "agents-per-socket", 0, "QUIC agents sharing one UDP socket (default 4000)")
	f.StringSliceVar(&curves, "curves", nil, "TLS key exchange groups of the agents (default Go's)")
	f.BoolVar(&cfg.Reconnect, "reconnect", false, "agents whose connection ends come back, with jittered exponential backoff, until the run ends")
	f.DurationVar(&cfg.ReconnectBackoff.Min, "reconnect-min", 0, "first reconnect delay; each retry doubles it, jittered (default 250ms)")
	f.DurationVar(&cfg.ReconnectBackoff.Max, "reconnect-max", 0, "largest reconnect delay (default 30s)")
	f.BoolVar(&asJSON, "json", false, "print the summary as one JSON object on stdout")
	cmd.MarkFlagRequired("target")
	cmd.MarkFlagRequired("ca-dir")
	return cmd
}
