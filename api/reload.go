package api

import (
	"context"
	"net/http"
	"time"
)

// ReloadResult answers POST /api/v1/reload: the configuration file was
// read again and was valid.
type ReloadResult struct {
	// File is the configuration file that was read.
	File string `json:"file"`
	// Applied lists what took effect without a restart: "TLS
	// certificates" (read again from their files, on every reload with
	// TLS), the changed keys applied (such as proxy.idle_timeout,
	// pools.green.replicas, hooks.on_promote), "admin tokens" (when the
	// admin or read-only token changed), and "KEY (contents)" for a key
	// file read again whose contents changed under the same path.
	Applied []string `json:"applied"`
	// RestartNeeded lists the keys whose new value differs from the
	// running one and only takes effect after a restart; empty when none.
	RestartNeeded []string `json:"restart_needed"`
	// NotApplied lists changed keys that neither this reload nor a
	// restart applies: the model or replicas of a pool a deployment set
	// (the state wins; deploy to change them). Empty when none.
	NotApplied []string `json:"not_applied"`
}

// Reload asks the gateway to read its configuration file again. An
// invalid file changes nothing and is refused (422) naming the keys.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var r ReloadResult
	return &r, c.do(ctx, http.MethodPost, "/api/v1/reload", nil, &r)
}

// LastReload answers GET /api/v1/reload: how the last reload since the
// gateway started went, whatever asked for it.
type LastReload struct {
	// Time is when it ran; nil when there was none since the start.
	Time *time.Time `json:"time,omitempty"`
	// Trigger is what asked for it: "SIGHUP" or "POST /api/v1/reload".
	Trigger string `json:"trigger,omitempty"`
	// Error says why it was refused (nothing changed); empty when it
	// succeeded.
	Error string `json:"error,omitempty"`
	// Result is what it did; nil when it was refused or there was none.
	Result *ReloadResult `json:"result,omitempty"`
}

// LastReload returns the outcome of the last reload (SIGHUP included).
func (c *Client) LastReload(ctx context.Context) (*LastReload, error) {
	var r LastReload
	return &r, c.do(ctx, http.MethodGet, "/api/v1/reload", nil, &r)
}
