package gateway

import (
	"context"

	"github.com/sekisho/sekisho/internal/admin"
)

// newAdmin builds the admin listener when the config asks for one.
func (s *Server) newAdmin() error {
	ac := s.cfg.Admin
	if ac.Listen == "" || ac.Off() {
		return nil
	}
	a, err := admin.New(admin.Options{
		Config: ac, Gatherer: s.reg, Logger: s.log,
		Status: func() any { return s.Status() },
		Ready:  s.Ready,
		Actions: map[string]admin.Action{
			"reload": func(context.Context, []byte) (any, error) { return s.reloadFromSource() },
		},
	})
	if err != nil {
		return err
	}
	s.admin = a
	return nil
}
