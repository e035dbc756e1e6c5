package main

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logConfig is the log: section of every role's config file.
type logConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json (default) or console.
	Format string `yaml:"format"`
}

func (l logConfig) validate() error {
	if _, err := zapcore.ParseLevel(l.levelOrDefault()); err != nil {
		return fmt.Errorf("want debug, info, warn or error, got %q", l.Level)
	}
	switch l.Format {
	case "", "json", "console":
		return nil
	}
	return fmt.Errorf("want json or console, got %q", l.Format)
}

func (l logConfig) levelOrDefault() string {
	if l.Level == "" {
		return "info"
	}
	return l.Level
}

// newLogger builds the root logger: JSON by default, sampled so that a
// flood of refused peers cannot flood the disk.
func newLogger(l logConfig) (*zap.Logger, error) {
	return buildLogger(l, true)
}

// newAccessLogger builds the access log's logger: not sampled, since its
// sampling is its own (access_log.sample).
func newAccessLogger(l logConfig) (*zap.Logger, error) {
	log, err := buildLogger(l, false)
	if err != nil {
		return nil, err
	}
	return log.Named("access"), nil
}

func buildLogger(l logConfig, sampled bool) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(l.levelOrDefault())
	if err != nil {
		return nil, err
	}
	var cfg zap.Config
	if l.Format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.Development = false
		cfg.DisableStacktrace = true
	} else {
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableCaller = true
	if !sampled {
		cfg.Sampling = nil
	}
	return cfg.Build()
}
