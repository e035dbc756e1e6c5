package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// roleCmd makes the command of a long-running role: a required --config
// file, whose errors exit with status 2, and a root logger built from its
// log: section.
func roleCmd[F any](use, short string, load func(string) (*F, error), logOf func(*F) logConfig,
	run func(f *F, log *zap.Logger) error) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   use + " --config FILE",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			f, err := load(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			log, err := newLogger(logOf(f))
			if err != nil {
				return err
			}
			defer log.Sync()
			return run(f, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", use+" config file (YAML)")
	cmd.MarkFlagRequired("config")
	return cmd
}

func newGatewayCmd() *cobra.Command {
	return roleCmd("gateway", "Run the gateway (DMZ): agents' mTLS in, connectors' tunnels in",
		loadGateway, func(f *gatewayFile) logConfig { return f.Log },
		func(f *gatewayFile, log *zap.Logger) error {
			f.Config.Logger = log
			gw, err := gateway.New(f.Config)
			if err != nil {
				return err
			}
			return runGateway(gw, f.Config.ShutdownTimeout, log)
		})
}

func newConnectorCmd() *cobra.Command {
	return roleCmd("connector", "Run the connector (LAN): dials out to gateways, relays to internal services",
		loadConnector, func(f *connectorFile) logConfig { return f.Log },
		func(f *connectorFile, log *zap.Logger) error {
			f.Config.Logger = log
			connector.Version = version
			c, err := connector.New(f.Config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return c.Run(ctx)
		})
}

// runGateway serves until SIGTERM or SIGINT, then drains in-flight
// requests for up to timeout; a second signal stops at once.
func runGateway(gw *gateway.Server, timeout time.Duration, log *zap.Logger) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- gw.Run(context.Background()) }()
	select {
	case err := <-done:
		return err
	case sig := <-sigs:
		log.Info("signal received, draining", zap.Stringer("signal", sig), zap.Duration("timeout", timeout))
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal, stopping now")
			gw.Close()
		case <-ctx.Done():
		}
	}()
	gw.Shutdown(ctx)
	return <-done
}
