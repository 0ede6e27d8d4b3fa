package node

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// newLogger builds the node's logger from its configuration.
func newLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("%w: log level %q: want debug, info, warn or error", ErrConfig, c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.Format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: log format %q: want text or json", ErrConfig, c.Format)
}

// NewLogger builds a logger from a LogConfig, writing to w.
func NewLogger(c LogConfig, w io.Writer) (*slog.Logger, error) { return newLogger(c, w) }
