package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Make connector keys and print pins"}
	cmd.AddCommand(&cobra.Command{
		Use:   "create FILE",
		Short: "Create a P-256 private key (owner-only) and print its pin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := certs.NewKey()
			if err != nil {
				return err
			}
			if err := certs.WriteKey(args[0], key); err != nil {
				return err
			}
			pin, err := auth.PinOf(key.Public())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pin)
			return nil
		},
	}, &cobra.Command{
		Use:   "pin FILE",
		Short: "Print the SPKI pin (sha256/BASE64) of a private key or certificate file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pin, err := pinOfFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pin)
			return nil
		},
	})
	return cmd
}

func pinOfFile(path string) (auth.Pin, error) {
	if key, err := certs.LoadKey(path); err == nil {
		return auth.PinOf(key.Public())
	}
	cs, err := certs.LoadCerts(path)
	if err != nil {
		return auth.Pin{}, fmt.Errorf("%s holds neither a private key nor a certificate", path)
	}
	return auth.PinOfCert(cs[0]), nil
}
