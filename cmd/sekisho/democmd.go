package main

import (
	"encoding/json"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/demo"
	"github.com/sekisho/sekisho/internal/config"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	var asJSON, verbose bool
	var payload string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run everything on loopback: toy core, connector, gateway and simulated agents",
		Long: `demo starts a toy management server (the core), a connector, a gateway and
simulated agents with certificates from a fresh CA, all on loopback ephemeral
ports. The agents fetch policies, upload inventory and download patches through
the gateway and the tunnel for --duration, then a summary is printed. The exit
status is non-zero if any request failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := config.ParseSize(payload)
			if err != nil {
				return fmt.Errorf("--payload-size: %w", err)
			}
			opts.PayloadSize = size
			logCfg := logConfig{Level: "warn", Format: "console"}
			if verbose {
				logCfg.Level = "info"
			}
			if opts.Logger, err = newLogger(logCfg); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if !asJSON {
				opts.OnAdmin = func(gw, conn string) {
					fmt.Fprintf(cmd.ErrOrStderr(), "status page: %s (connector: %s)\n", gw, conn)
				}
				opts.Progress = cmd.ErrOrStderr()
				opts.OnGateway = func(tcp, h3 string) {
					fmt.Fprintf(cmd.ErrOrStderr(), "gateway: %s\ngateway HTTP/3: %s\n", tcp, h3)
				}
				if opts.NoAgents {
					fmt.Fprintf(cmd.ErrOrStderr(), "sekisho demo: no agents of its own (for sekisho loadgen), %s, Ctrl-C to stop early\n", durationOrDefault(opts))
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "sekisho demo: %d agents, %s, Ctrl-C to stop early\n", max(opts.Agents, 1), durationOrDefault(opts))
				}
			}
			sum, err := demo.Run(ctx, opts)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				if err := enc.Encode(sum); err != nil {
					return err
				}
			} else {
				sum.WriteText(cmd.OutOrStdout())
			}
			if sum.Failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d requests failed", sum.Failed)}
			}
			return nil
		},
	}
	cmd.AddCommand(newDemoCoreCmd())
	f := cmd.Flags()
	f.IntVar(&opts.Agents, "agents", 20, "number of simulated agents")
	f.DurationVar(&opts.Duration, "duration", 0, "how long the agents work (default 10s)")
	f.DurationVar(&opts.Interval, "interval", 0, "each agent's pause between requests (default 50ms)")
	f.StringVar(&payload, "payload-size", "4MiB", "size of the patch payload")
	f.BoolVar(&asJSON, "json", false, "print the summary as one JSON object on stdout")
	f.BoolVar(&verbose, "verbose", false, "show the roles' info logs")
	f.StringVar(&opts.Admin, "admin", "127.0.0.1:0", `gateway admin listener (status page, metrics); "off" for none`)
	f.StringVar(&opts.Transport, "transport", "tcp", "tunnel transport: tcp (yamux over TLS) or quic")
	f.StringVar(&opts.AgentTransport, "agent-transport", "tcp", "agents' transport: tcp (HTTP/1.1, HTTP/2) or quic (HTTP/3)")
	f.BoolVar(&opts.NoAgents, "no-agents", false, "run no simulated agents: serve for --duration (for sekisho loadgen)")
	f.StringVar(&opts.PKIDir, "pki-out", "", "write the demo tenant's CA and the gateway's CA here, for sekisho loadgen")
	return cmd
}

func durationOrDefault(o demo.Options) string {
	if o.Duration == 0 {
		return "10s"
	}
	return o.Duration.String()
}

func newDemoCoreCmd() *cobra.Command {
	var addr string
	var payload string
	cmd := &cobra.Command{
		Use:   "core --listen ADDR",
		Short: "Run only the demo's toy core (a stand-in management server) over plain HTTP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := config.ParseSize(payload)
			if err != nil {
				return fmt.Errorf("--payload-size: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.ErrOrStderr(), "toy core listening on %s\n", addr)
			return demo.ServeCore(ctx, addr, size)
		},
	}
	cmd.Flags().StringVar(&addr, "listen", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&payload, "payload-size", "4MiB", "size of the patch payload")
	return cmd
}
