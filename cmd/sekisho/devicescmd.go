package main

import (
	"fmt"
	"net/url"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/connector"
)

func newTokenCmd() *cobra.Command {
	var af adminFlags
	var req connector.TokenRequest
	cmd := &cobra.Command{Use: "token", Short: "Enrollment tokens (through a running connector)"}
	create := &cobra.Command{
		Use:   "create --ttl 24h --uses 50 [--approve] --connector FILE",
		Short: "Create an enrollment token; it is printed once and stored only hashed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			req.CreatedBy = operator()
			var tok connector.CreatedToken
			if err := c.call("POST", "/api/tokens", req, &tok); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s: %d uses, expires %s; shown once, keep it safe\n",
				tok.ID, tok.Uses, tok.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().DurationVar(&req.TTL, "ttl", 24*time.Hour, "how long the token can be used")
	create.Flags().IntVar(&req.Uses, "uses", 1, "how many devices may enroll with it")
	create.Flags().BoolVar(&req.RequireApproval, "approve", false, "devices wait for sekisho devices approve")
	create.Flags().StringSliceVar(&req.Groups, "group", nil, "device groups given to enrolled devices (repeat)")
	af.add(create)
	cmd.AddCommand(create)
	return cmd
}

func newDevicesCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "devices", Short: "List, show, approve and revoke devices (through a running connector)"}
	var status, group string
	list := &cobra.Command{
		Use: "list", Short: "List the tenant's devices", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var ds []auth.Device
			if err := c.call("GET", "/api/devices?"+url.Values{"status": {status}, "group": {group}}.Encode(), nil, &ds); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tSTATUS\tNAME\tGROUPS\tCERT EXPIRES")
			for _, d := range ds {
				exp := "-"
				if !d.CertNotAfter.IsZero() {
					exp = d.CertNotAfter.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", d.ID, d.Status, d.Name, d.Groups, exp)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&status, "status", "", "only pending, active or revoked devices")
	list.Flags().StringVar(&group, "group", "", "only devices in this group")
	show := deviceCmd(&af, "show ID", "Show one device", func(c *adminClient, id string, out *auth.Device) error {
		return c.call("GET", "/api/devices?"+url.Values{"id": {id}}.Encode(), nil, out)
	})
	approve := deviceCmd(&af, "approve ID", "Approve a device waiting for approval", func(c *adminClient, id string, out *auth.Device) error {
		return c.call("POST", "/api/devices/approve", map[string]string{"ID": id, "Actor": operator()}, out)
	})
	var reason string
	revoke := deviceCmd(&af, "revoke ID", "Revoke a device: its connections close, it cannot renew", func(c *adminClient, id string, out *auth.Device) error {
		return c.call("POST", "/api/devices/revoke", map[string]string{"ID": id, "Reason": reason, "Actor": operator()}, out)
	})
	revoke.Flags().StringVar(&reason, "reason", "revoked by an operator", "why (kept in the audit log)")
	for _, c := range []*cobra.Command{list, show, approve, revoke} {
		af.add(c)
		cmd.AddCommand(c)
	}
	return cmd
}

// deviceCmd makes a command acting on one device and printing it.
func deviceCmd(af *adminFlags, use, short string, do func(*adminClient, string, *auth.Device) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var d auth.Device
			if err := do(c, args[0], &d); err != nil {
				return err
			}
			printDevice(cmd, d)
			return nil
		},
	}
}

func printDevice(cmd *cobra.Command, d auth.Device) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "device   %s (tenant %s)\nstatus   %s\nname     %s\ngroups   %v\n", d.ID, d.Tenant, d.Status, d.Name, d.Groups)
	if d.CertSerial != "" {
		fmt.Fprintf(out, "cert     serial %s, expires %s\n", d.CertSerial, d.CertNotAfter.UTC().Format(time.RFC3339))
	}
	if !d.RevokedAt.IsZero() {
		fmt.Fprintf(out, "revoked  %s: %s\n", d.RevokedAt.UTC().Format(time.RFC3339), d.RevokeReason)
	}
}

// operator names who acts, for the audit log.
func operator() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}
