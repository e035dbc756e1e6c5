package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/agent"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/internal/config"
)

// Default admin listeners of config files (loopback only).
const (
	defaultGatewayAdmin   = "127.0.0.1:9180"
	defaultConnectorAdmin = "127.0.0.1:9181"
)

// Roles of config files; every file says which it is in its role: key.
const (
	roleGateway   = "gateway"
	roleConnector = "connector"
	roleAgent     = "agent"
)

// gatewayFile is a gateway's config file.
type gatewayFile struct {
	Role           string    `yaml:"role"`
	Log            logConfig `yaml:"log"`
	gateway.Config `yaml:",inline"`
}

// Validate checks the file's own keys, then the gateway's.
func (f *gatewayFile) Validate() error {
	return errors.Join(checkRole(f.Role, roleGateway), logErr(f.Log), f.Config.Validate())
}

// connectorFile is a connector's config file.
type connectorFile struct {
	Role             string    `yaml:"role"`
	Log              logConfig `yaml:"log"`
	connector.Config `yaml:",inline"`
}

// Validate checks the file's own keys, then the connector's.
func (f *connectorFile) Validate() error {
	return errors.Join(checkRole(f.Role, roleConnector), logErr(f.Log), f.Config.Validate())
}

func checkRole(got, want string) error {
	if got == want {
		return nil
	}
	if got == "" {
		return config.Fieldf("role", "required: this file must say role: %s", want)
	}
	return config.Fieldf("role", "this is a %s config, not a %s config", got, want)
}

func logErr(l logConfig) error {
	if err := l.validate(); err != nil {
		return config.Field("log", err)
	}
	return nil
}

// agentFile is an agent's config file.
type agentFile struct {
	Role         string    `yaml:"role"`
	Log          logConfig `yaml:"log"`
	agent.Config `yaml:",inline"`
}

// Validate checks the file's own keys, then the agent's.
func (f *agentFile) Validate() error {
	return errors.Join(checkRole(f.Role, roleAgent), logErr(f.Log), f.Config.Validate())
}

// loadAgent reads and checks an agent config file.
func loadAgent(path string) (*agentFile, error) {
	var f agentFile
	if err := config.Load(path, &f); err != nil {
		return nil, err
	}
	ps := []*string{&f.StateDir}
	for i := range f.Gateways {
		ps = append(ps, &f.Gateways[i].CAFile)
	}
	resolvePaths(path, ps...)
	return &f, nil
}

// loadGateway reads and checks a gateway config file.
func loadGateway(path string) (*gatewayFile, error) {
	var f gatewayFile
	if err := config.Load(path, &f); err != nil {
		return nil, err
	}
	f.resolve(path)
	if f.Admin.Listen == "" {
		f.Admin.Listen = defaultGatewayAdmin
	}
	if f.QUIC.Listen == "" {
		// HTTP/3 on the UDP port matching the TCP one.
		f.QUIC.Listen = f.Listen
		if f.QUIC.Listen == "" {
			f.QUIC.Listen = ":443"
		}
	}
	if f.QUIC.TunnelListen == "" {
		f.QUIC.TunnelListen = ":4443"
	}
	return &f, nil
}

// loadConnector reads and checks a connector config file.
func loadConnector(path string) (*connectorFile, error) {
	var f connectorFile
	if err := config.Load(path, &f); err != nil {
		return nil, err
	}
	f.resolve(path)
	if f.Admin.Listen == "" {
		f.Admin.Listen = defaultConnectorAdmin
	}
	return &f, nil
}

// peekRole reads the role: key of a config file without checking the rest.
func peekRole(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		Role string `yaml:"role"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if doc.Role == "" {
		return "", fmt.Errorf("%s:1: role: required (gateway, connector or agent)", path)
	}
	return doc.Role, nil
}

// checkFile validates a config file of any role.
func checkFile(path string) (role string, err error) {
	role, err = peekRole(path)
	if err != nil {
		return "", err
	}
	switch role {
	case roleGateway:
		_, err = loadGateway(path)
	case roleConnector:
		_, err = loadConnector(path)
	case roleAgent:
		_, err = loadAgent(path)
	default:
		err = fmt.Errorf("%s: role: unknown role %q (want gateway, connector or agent)", path, role)
	}
	return role, err
}

// resolvePaths makes the file names in a config relative to the config
// file's directory, so a config works from any working directory.
func resolvePaths(configPath string, paths ...*string) {
	dir := filepath.Dir(configPath)
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func (f *gatewayFile) resolve(path string) {
	resolvePaths(path, &f.TLS.CertFile, &f.TLS.KeyFile, &f.Admin.TokenFile, &f.QUIC.StatelessResetKeyFile)
	if a := f.TLS.ACME; a != nil {
		resolvePaths(path, &a.Storage, &a.TrustedRootsFile)
	}
}

func (f *connectorFile) resolve(path string) {
	ps := []*string{&f.KeyFile, &f.Admin.TokenFile, &f.CA.CertFile, &f.CA.KeyFile, &f.Payloads.Catalog}
	for i := range f.Payloads.SigningKeys {
		ps = append(ps, &f.Payloads.SigningKeys[i])
	}
	if f.DeviceRegistry != "" && !strings.Contains(f.DeviceRegistry, "://") && !strings.HasPrefix(f.DeviceRegistry, "sqlite:") {
		ps = append(ps, &f.DeviceRegistry)
	}
	for i := range f.Gateways {
		ps = append(ps, &f.Gateways[i].CAFile)
	}
	for i := range f.AgentCA.CertFiles {
		ps = append(ps, &f.AgentCA.CertFiles[i])
	}
	for i := range f.Services {
		if f.Services[i].TLS != nil {
			ps = append(ps, &f.Services[i].TLS.CAFile)
		}
	}
	resolvePaths(path, ps...)
}
