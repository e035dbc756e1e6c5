package connector

import (
	"context"
	"errors"

	"github.com/sekisho/sekisho/internal/admin"
)

// newAdmin builds the admin listener when the config asks for one.
func (c *Connector) newAdmin() error {
	ac := c.cfg.Admin
	if ac.Listen == "" || ac.Off() {
		return nil
	}
	actions, queries := c.deviceActions()
	acts := map[string]admin.Action{
		"reload": func(context.Context, []byte) (any, error) { return c.reloadFromSource() },
	}
	for name, f := range actions {
		acts[name] = f
	}
	qs := map[string]admin.Query{}
	for name, f := range queries {
		qs[name] = f
	}
	a, err := admin.New(admin.Options{
		Config: ac, Gatherer: c.reg, Logger: c.log,
		Status:  func() any { return c.Status() },
		Ready:   c.Ready,
		Actions: acts, Queries: qs,
	})
	if err != nil {
		return err
	}
	c.admin = a
	return nil
}

// reloadFromSource is the admin API's reload action.
func (c *Connector) reloadFromSource() (any, error) {
	if c.cfg.ReloadSource == nil {
		return nil, errors.New("this connector has no config source to reload from")
	}
	cfg, err := c.cfg.ReloadSource()
	if err != nil {
		c.metrics.reloads.WithLabelValues("refused").Inc()
		return nil, err
	}
	return c.Reload(cfg)
}
