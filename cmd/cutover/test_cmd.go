package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cutover-dev/cutover/internal/secret"
	"github.com/cutover-dev/cutover/internal/synthetic"
)

// testFlags are the flags of "cutover test".
type testFlags struct {
	suite       string
	urls        []string
	model       string
	clientModel string
	json        bool
	headers     []string
	apiKeyFile  string
	concurrency int
	repeat      int
}

// newTestCmd returns the "test" command: run a synthetic test suite.
func newTestCmd() *cobra.Command {
	f := &testFlags{}
	cmd := &cobra.Command{
		Use:   "test --suite FILE --url URL",
		Short: "Run a synthetic test suite against an OpenAI-compatible endpoint",
		Long: `Run a synthetic test suite (a YAML file of requests and expectations, see
docs/synthetic.md) against any OpenAI-compatible endpoint: the gateway, its
preview listener, a vLLM replica or the simulator. --url is the base URL; the
paths come from the cases. With several --url, requests go to them in turn.

Prints a report (a table of the cases, every failure with its reasons) or,
with --json, the same as JSON. Exit code: 0 when every request passed, 1
when any failed, 2 for a bad suite file or bad flags.

Example:
  cutover test --suite examples/suites/smoke.yaml --url http://127.0.0.1:8000 --model my-model`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTest(cmd.Context(), cmd.OutOrStdout(), f, cmd.Flags())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.suite, "suite", "", "suite file (YAML; required)")
	fl.StringArrayVar(&f.urls, "url", nil, "base URL of the endpoint, e.g. http://127.0.0.1:8080 (required; repeat for round-robin)")
	fl.StringVar(&f.model, "model", "", "model for requests that name none, or name --client-model")
	fl.StringVar(&f.clientModel, "client-model", "", "client-facing model name in the suite to replace with --model")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.StringArrayVar(&f.headers, "header", nil, "request header 'Name: value' (repeatable)")
	fl.StringVar(&f.apiKeyFile, "api-key-file", "", "file holding the endpoint's API key, sent as Authorization: Bearer KEY (a gateway's client key, vLLM's --api-key)")
	fl.IntVar(&f.concurrency, "concurrency", 0, "requests in flight at once (default: the suite's)")
	fl.IntVar(&f.repeat, "repeat", 0, "runs of each case (default: the suite's)")
	return cmd
}

// runTest loads the suite, applies the flags, runs it and prints the report.
// A failing suite is an error (exit 1); bad flags or a bad suite file are
// usage errors (exit 2).
func runTest(ctx context.Context, stdout io.Writer, f *testFlags, fl *pflag.FlagSet) error {
	r, s, err := f.setup(fl)
	if err != nil {
		return &usageError{err}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	rep := r.Run(ctx, s, nil)
	if f.json {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	switch {
	case rep.OK():
		return nil
	case rep.Skipped > 0 && ctx.Err() != nil:
		return fmt.Errorf("suite %s interrupted: %d of %d requests not run", f.suite, rep.Skipped, rep.Requests+rep.Skipped)
	case rep.Requests == 0:
		return fmt.Errorf("suite %s: no request ran", f.suite)
	}
	return fmt.Errorf("suite %s failed: %d of %d requests failed", f.suite, rep.Failed, rep.Requests)
}

// setup checks the flags, loads the suite and applies the overrides.
func (f *testFlags) setup(fl *pflag.FlagSet) (*synthetic.Runner, *synthetic.Suite, error) {
	if f.suite == "" {
		return nil, nil, errors.New("--suite is required")
	}
	if len(f.urls) == 0 {
		return nil, nil, errors.New("--url is required")
	}
	if f.clientModel != "" && f.model == "" {
		return nil, nil, fmt.Errorf("--client-model %q needs --model", f.clientModel)
	}
	urls := make([]string, len(f.urls))
	for i, u := range f.urls {
		base, err := baseURL(u)
		if err != nil {
			return nil, nil, err
		}
		urls[i] = base
	}
	header := http.Header{}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, nil, fmt.Errorf("--header %q: want 'Name: value'", h)
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if f.apiKeyFile != "" {
		key, err := secret.ReadFile(f.apiKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--api-key-file: %w", err)
		}
		header.Set("Authorization", secret.Bearer(key))
	}
	s, err := synthetic.Load(f.suite)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range []struct {
		name string
		v    int
		dst  *int
	}{{"concurrency", f.concurrency, &s.Concurrency}, {"repeat", f.repeat, &s.Repeat}} {
		if !fl.Changed(o.name) {
			continue
		}
		if o.v < 1 {
			return nil, nil, fmt.Errorf("--%s %d: must be at least 1", o.name, o.v)
		}
		*o.dst = o.v
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(s.Concurrency, tr.MaxIdleConnsPerHost)
	return &synthetic.Runner{
		HTTP:        &http.Client{Transport: tr},
		BaseURLs:    urls,
		Model:       f.model,
		ClientModel: f.clientModel,
		Header:      header,
	}, s, nil
}

// baseURL checks a --url value; "host:port" means http://host:port.
func baseURL(raw string) (string, error) {
	u := raw
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("--url %q: %w", raw, err)
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "", fmt.Errorf("--url %q: want http://host:port or https://host", raw)
	}
	return strings.TrimRight(u, "/"), nil
}
