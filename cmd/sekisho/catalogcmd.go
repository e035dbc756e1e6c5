package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/payload"
)

func newCatalogCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Make catalog signing keys and check payload catalogs"}
	cmd.AddCommand(&cobra.Command{
		Use:   "keygen FILE",
		Short: "Create an Ed25519 catalog signing key (owner-only) and print its key id",
		Long: `keygen creates the tenant's catalog signing key. It stays on the LAN side, with
the connector (payloads.signing_keys); agents receive its public half at
enrollment and renewal. Back it up like the CA key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := certs.WriteKey(args[0], key); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), payload.KeyID(pub))
			return nil
		},
	}, &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate payload catalog files; exit 1 with file:line: field: errors",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := false
			for _, path := range args {
				entries, err := connector.LoadCatalogFile(path, time.Now())
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed = true
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d entries)\n", path, len(entries))
			}
			if failed {
				return &exitError{code: 1}
			}
			return nil
		},
	})
	return cmd
}
