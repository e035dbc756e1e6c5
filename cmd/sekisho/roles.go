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
	run func(path string, f *F, log *zap.Logger) error) *cobra.Command {
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
			return run(path, f, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", use+" config file (YAML)")
	cmd.MarkFlagRequired("config")
	return cmd
}

func newGatewayCmd() *cobra.Command {
	return roleCmd("gateway", "Run the gateway (DMZ): agents' mTLS in, connectors' tunnels in",
		loadGateway, func(f *gatewayFile) logConfig { return f.Log },
		func(path string, f *gatewayFile, log *zap.Logger) error {
			reload := func() (gateway.Config, error) {
				nf, err := loadGateway(path)
				if err != nil {
					return gateway.Config{}, err
				}
				return nf.Config, nil
			}
			cfg := f.Config
			cfg.Logger, cfg.Version, cfg.ReloadSource = log, version, reload
			access, err := newAccessLogger(f.Log)
			if err != nil {
				return err
			}
			cfg.AccessLogger = access
			gw, err := gateway.New(cfg)
			if err != nil {
				return err
			}
			return runGateway(gw, cfg.ShutdownTimeout, reload, log)
		})
}

// runGateway serves until SIGTERM or SIGINT, then drains in-flight
// requests for up to timeout; a second signal stops at once. SIGHUP
// reloads the config file.
func runGateway(gw *gateway.Server, timeout time.Duration, reload func() (gateway.Config, error), log *zap.Logger) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	stopHUP := onHangup(func() {
		cfg, err := reload()
		if err == nil {
			_, err = gw.Reload(cfg)
		}
		if err != nil {
			log.Error("reload refused, configuration unchanged", zap.Error(err))
		}
	})
	defer stopHUP()
	done := make(chan error, 1)
	go func() { done <- gw.Run(context.Background()) }()
	go func() { gw.Addr(); sdNotify("READY=1") }()
	select {
	case err := <-done:
		return err
	case sig := <-sigs:
		sdNotify("STOPPING=1")
		log.Info("signal received, draining", zap.Stringer("signal", sig), zap.Duration("timeout", timeout))
	}
	if timeout <= 0 {
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
	return roleCmd("connector", "Run the connector (LAN): dials out to gateways, relays to internal services",
		loadConnector, func(f *connectorFile) logConfig { return f.Log },
		func(path string, f *connectorFile, log *zap.Logger) error {
			reload := func() (connector.Config, error) {
				nf, err := loadConnector(path)
				if err != nil {
					return connector.Config{}, err
				}
				return nf.Config, nil
			}
			cfg := f.Config
			cfg.Logger, cfg.ReloadSource = log, reload
			connector.Version = version
			c, err := connector.New(cfg)
			if err != nil {
				return err
			}
			stopHUP := onHangup(func() {
				nc, err := reload()
				if err == nil {
					_, err = c.Reload(nc)
				}
				if err != nil {
					log.Error("reload refused, configuration unchanged", zap.Error(err))
				}
			})
			defer stopHUP()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			sdNotify("READY=1")
			err = c.Run(ctx)
			sdNotify("STOPPING=1")
			return err
		})
}

// onHangup calls reload on every SIGHUP, telling systemd around it, until
// the returned stop is called.
func onHangup(reload func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	notifyHangup(hup)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				sdNotify(sdReloading())
				reload()
				sdNotify("READY=1")
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
