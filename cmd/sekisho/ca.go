package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// File names inside a CA directory.
const (
	caCertName = "ca.pem"
	caKeyName  = "ca.key"
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage a tenant's agent CA (kept on the LAN side, next to the connector)",
	}
	cmd.AddCommand(newCAInitCmd(), newCAIssueCmd(), newCAIssueServerCmd())
	return cmd
}

func newCAInitCmd() *cobra.Command {
	var tenant, dir string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "init --tenant NAME --dir DIR",
		Short: "Create a tenant CA: DIR/ca.pem and DIR/ca.key (owner-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := certs.NewCA(tenant, time.Now(), lifetime)
			if err != nil {
				return err
			}
			keyPath, certPath := filepath.Join(dir, caKeyName), filepath.Join(dir, caCertName)
			if err := certs.WriteKey(keyPath, ca.Key); err != nil {
				return fmt.Errorf("write CA key: %w", err)
			}
			if err := certs.WriteCert(certPath, ca.Cert.Raw); err != nil {
				return fmt.Errorf("write CA certificate: %w", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created CA for tenant %s\n  certificate: %s\n  key:         %s (back it up; it never leaves the LAN)\n",
				tenant, certPath, keyPath)
			fmt.Fprintf(out, "  pin:         %s (optional agent_ca_pins entry in the gateway config)\n", auth.PinOfCert(ca.Cert))
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant name (a-z, 0-9, -)")
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write ca.pem and ca.key into")
	cmd.Flags().DurationVar(&lifetime, "lifetime", certs.DefaultCALifetime, "CA certificate lifetime")
	cmd.MarkFlagRequired("tenant")
	return cmd
}

func newCAIssueCmd() *cobra.Command {
	var dir, device, out string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "issue --dir CADIR --device ID --out DIR",
		Short: "Issue an agent certificate: DIR/agent.pem and DIR/agent.key (key made here)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := loadCADir(dir)
			if err != nil {
				return err
			}
			key, err := certs.NewKey()
			if err != nil {
				return err
			}
			leaf, err := ca.IssueAgent(certs.AgentRequest{DeviceID: device, PublicKey: key.Public(), Lifetime: lifetime, Now: time.Now()})
			if err != nil {
				return err
			}
			keyPath, certPath := filepath.Join(out, "agent.key"), filepath.Join(out, "agent.pem")
			if err := certs.WriteKey(keyPath, key); err != nil {
				return fmt.Errorf("write agent key: %w", err)
			}
			if err := certs.WriteCert(certPath, leaf.Raw); err != nil {
				return fmt.Errorf("write agent certificate: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s for device %s of tenant %s, valid until %s\n  key: %s\n",
				certPath, device, ca.Tenant, leaf.NotAfter.UTC().Format(time.RFC3339), keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "CA directory (holding ca.pem and ca.key)")
	cmd.Flags().StringVar(&device, "device", "", "device id to name in the certificate")
	cmd.Flags().StringVar(&out, "out", ".", "directory to write agent.pem and agent.key into")
	cmd.Flags().DurationVar(&lifetime, "lifetime", certs.DefaultAgentLifetime, "certificate lifetime")
	cmd.MarkFlagRequired("device")
	return cmd
}

func newCAIssueServerCmd() *cobra.Command {
	var dir, out string
	var hosts []string
	var lifetime time.Duration
	cmd := &cobra.Command{
		Use:   "issue-server --dir CADIR --host NAME... --out DIR",
		Short: "Issue a TLS server certificate (DIR/server.pem, DIR/server.key) from a private CA",
		Long: `issue-server signs a server certificate for a gateway (or a test core) from a
private CA made with "ca init". Production gateways usually get theirs from
ACME or the organisation's PKI instead; connectors then trust this CA with
gateways[].ca_file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := loadCADir(dir)
			if err != nil {
				return err
			}
			key, err := certs.NewKey()
			if err != nil {
				return err
			}
			leaf, err := ca.IssueServer(key.Public(), hosts, time.Now(), lifetime)
			if err != nil {
				return err
			}
			keyPath, certPath := filepath.Join(out, "server.key"), filepath.Join(out, "server.pem")
			if err := certs.WriteKey(keyPath, key); err != nil {
				return fmt.Errorf("write server key: %w", err)
			}
			if err := certs.WriteCert(certPath, leaf.Raw, ca.Cert.Raw); err != nil {
				return fmt.Errorf("write server certificate: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s for %v, valid until %s\n  key: %s\n",
				certPath, hosts, leaf.NotAfter.UTC().Format(time.RFC3339), keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "CA directory (holding ca.pem and ca.key)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address (repeat for several)")
	cmd.Flags().StringVar(&out, "out", ".", "directory to write server.pem and server.key into")
	cmd.Flags().DurationVar(&lifetime, "lifetime", 90*24*time.Hour, "certificate lifetime")
	cmd.MarkFlagRequired("host")
	return cmd
}

// loadCADir loads DIR/ca.pem and DIR/ca.key; the tenant is the CA
// certificate's organization.
func loadCADir(dir string) (*certs.CA, error) {
	certPath := filepath.Join(dir, caCertName)
	cs, err := certs.LoadCerts(certPath)
	if err != nil {
		return nil, err
	}
	if len(cs[0].Subject.Organization) != 1 {
		return nil, errors.New(certPath + ": not a sekisho CA (no tenant in its organization)")
	}
	return certs.LoadCA(cs[0].Subject.Organization[0], certPath, filepath.Join(dir, caKeyName))
}
