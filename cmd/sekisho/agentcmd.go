package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/agent"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "The program on the remote PC: enroll, then run"}
	cmd.AddCommand(newAgentEnrollCmd(), newAgentRunCmd())
	return cmd
}

func newAgentEnrollCmd() *cobra.Command {
	var gateway, token, tokenFile, caFile, serverName, stateDir, cfgPath string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "enroll --gateway HOST[:PORT] --token-file FILE",
		Short: "Enroll this PC: make a key here, get a certificate through the gateway",
		Long: `enroll generates the device's key on this PC (it is never sent), sends a
certificate request with the enrollment token through the gateway to the
tenant's connector, waits while an operator's approval is pending, and writes
the key and certificate into the state directory, readable by the owner only.
Prefer --token-file (or --token-file -, standard input) to --token, which
other users can see in the process list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := agentConfigFor(cfgPath, gateway, caFile, serverName, stateDir)
			if err != nil {
				return err
			}
			tok, err := readToken(token, tokenFile, cmd)
			if err != nil {
				return err
			}
			if cfg.Logger, err = newLogger(logConfig{Level: "info", Format: "console"}); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			host, _ := os.Hostname()
			e, err := agent.Enroll(ctx, cfg, tok, agent.EnrollInfo{Hostname: host})
			if errors.Is(err, agent.ErrRefused) {
				return &exitError{code: 1, err: errors.New("enrollment refused (token wrong, used up or expired, or device not allowed): ask your administrator")}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled: tenant %s, device %s, certificate valid until %s\n  state: %s\n",
				e.Tenant, e.DeviceID, e.Certificate.NotAfter.UTC().Format(time.RFC3339), cfg.StateDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&gateway, "gateway", "", "gateway host[:port] (default port 443)")
	f.StringVar(&token, "token", "", "enrollment token (visible in the process list: prefer --token-file)")
	f.StringVar(&tokenFile, "token-file", "", `file holding the token ("-": standard input)`)
	f.StringVar(&caFile, "ca-file", "", "PEM CA of the gateway's certificate (default: system roots)")
	f.StringVar(&serverName, "server-name", "", "name to check in the gateway's certificate (default: the gateway's host)")
	f.StringVar(&stateDir, "state-dir", "", "where to keep the key and certificate (default "+agent.DefaultStateDir()+")")
	f.StringVar(&cfgPath, "config", "", "agent config file (gateways, state_dir) instead of the flags above")
	f.DurationVar(&timeout, "timeout", 24*time.Hour, "give up after this long (waiting for approval included)")
	return cmd
}

// agentConfigFor builds the enrollment config from a file or the flags.
func agentConfigFor(path, gateway, caFile, serverName, stateDir string) (agent.Config, error) {
	if path != "" {
		f, err := loadAgent(path)
		if err != nil {
			return agent.Config{}, &exitError{code: 2, err: err}
		}
		return f.Config, nil
	}
	if gateway == "" {
		return agent.Config{}, errors.New("--gateway or --config is required")
	}
	if _, _, err := net.SplitHostPort(gateway); err != nil {
		gateway = net.JoinHostPort(gateway, "443")
	}
	if stateDir == "" {
		stateDir = agent.DefaultStateDir()
	}
	return agent.Config{StateDir: stateDir,
		Gateways: []agent.GatewayConfig{{Address: gateway, CAFile: caFile, ServerName: serverName}}}, nil
}

func readToken(token, file string, cmd *cobra.Command) (string, error) {
	switch {
	case token != "" && file != "":
		return "", errors.New("--token or --token-file, not both")
	case token != "":
		return token, nil
	case file == "-":
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4<<10))
		return strings.TrimSpace(string(b)), err
	case file != "":
		b, err := os.ReadFile(file)
		return strings.TrimSpace(string(b)), err
	}
	return "", errors.New("--token-file (or --token) is required")
}

func newAgentRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent: renew the certificate, serve local forwards and the HTTP proxy",
		Long: `run keeps the device's certificate renewed (at two thirds of its lifetime,
or within the grace period after a PC was off), and serves on localhost the
configured TCP port forwards and HTTP proxy through the gateways, trying them
in order. On Windows it runs as a service when the service manager starts it
(sc.exe create sekisho-agent binPath= "...sekisho.exe agent run --config ...").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadAgent(path)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			log, err := newLogger(f.Log)
			if err != nil {
				return err
			}
			defer log.Sync()
			cfg := f.Config
			cfg.Logger = log
			run := func(ctx context.Context) error {
				a, err := agent.New(cfg)
				if err != nil {
					return err
				}
				defer a.Close()
				log.Info("agent running", zap.String("state_dir", cfg.StateDir))
				return a.Run(ctx)
			}
			if handled, err := agent.RunAsService("sekisho-agent", run); handled {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "agent config file (YAML)")
	cmd.MarkFlagRequired("config")
	return cmd
}
