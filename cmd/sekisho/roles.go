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

func newGatewayCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "gateway --config FILE",
		Short: "Run the gateway (DMZ): agents' mTLS in, connectors' tunnels in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadGateway(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			log, err := newLogger(f.Log)
			if err != nil {
				return err
			}
			defer log.Sync()
			f.Config.Logger = log
			gw, err := gateway.New(f.Config)
			if err != nil {
				return err
			}
			return runGateway(gw, f.Config.ShutdownTimeout, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "gateway config file (YAML)")
	cmd.MarkFlagRequired("config")
	return cmd
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

func newConnectorCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "connector --config FILE",
		Short: "Run the connector (LAN): dials out to gateways, relays to internal services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConnector(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			log, err := newLogger(f.Log)
			if err != nil {
				return err
			}
			defer log.Sync()
			f.Config.Logger = log
			connector.Version = version
			c, err := connector.New(f.Config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return c.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "connector config file (YAML)")
	cmd.MarkFlagRequired("config")
	return cmd
}
