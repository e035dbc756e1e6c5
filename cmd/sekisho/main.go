package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "sekisho:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "sekisho:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "sekisho",
		Short: "A VPN-less management gateway for remote PCs",
		Long: `sekisho lets an internal management server (the core) keep managing remote PCs
without a VPN: a gateway in the DMZ terminates the PCs' mutual TLS, a connector
inside the LAN dials out to it and relays their requests to the core.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newGatewayCmd(), newConnectorCmd(), newCACmd(), newKeyCmd(), newConfigCmd(),
		newCatalogCmd(), newDemoCmd(), newLoadgenCmd(), newTokenCmd(), newDevicesCmd(), newAgentCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "sekisho", version)
		},
	}
}
