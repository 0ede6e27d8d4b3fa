package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rendermesh/rendermesh/node"
)

func cmdNode(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("node", stderr)
	cfg, rest, err := node.Load(fs, args, os.LookupEnv)
	if err != nil {
		return parseErr(err)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	}
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// cmdNodeAdmin talks to a running node's admin listener.
func cmdNodeAdmin(ctx context.Context, action string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node "+action, stderr)
	admin := fs.String("admin", envOr(node.EnvName("admin"), node.Default().Admin.Listen), "the node's admin listen address")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	method, path := http.MethodPost, "/v1/container/"+action
	switch action {
	case "status":
		method, path = http.MethodGet, "/v1/status"
	case "fee":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: node fee AMOUNT: the new ask per 15-minute session, e.g. 0.3", errUsage)
		}
		if _, err := node.ParseAmount(fs.Arg(0)); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		path += "?session_fee=" + url.QueryEscape(fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+*admin+path, nil)
	if err != nil {
		return fmt.Errorf("%w: admin address %q: %v", errUsage, *admin, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node's admin listener at %s (is the node running? set --admin to its address): %v", *admin, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if action == "status" {
		_, err := stdout.Write(body)
		return err
	}
	var r struct {
		State, Error string
		Fee          string `json:"session_fee"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("admin listener at %s answered %s: %s", *admin, resp.Status, strings.TrimSpace(string(body)))
	}
	if r.Error != "" {
		return fmt.Errorf("%s refused: %s", action, r.Error)
	}
	if action == "fee" {
		fmt.Fprintf(stdout, "container now asks %s per 15-minute session\n", r.Fee)
		return nil
	}
	fmt.Fprintf(stdout, "container is now %s\n", r.State)
	return nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
