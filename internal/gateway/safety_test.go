package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestPromoteRefusesAbortedCandidate: over the admin API, a version
// aborted while ready (it never passed before_promote) is not promoted by
// a plain promote: 409 JSON naming the deployment and its outcome, and
// the status's actions say so first. With force it goes live, recorded as
// forced with the deployment in the history. Then rollback undoes that
// switch once; a second rollback is refused, and a revision guard refuses
// a switch on a state that moved on.
func TestPromoteRefusesAbortedCandidate(t *testing.T) {
	e, spare := rolloutEnv(t, nil)
	ctx := context.Background()
	e.deployReady(t, spare)
	if _, err := e.admin.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := st.Actions["promote"]; a.Allowed || a.Code != "standby_not_passed" || !a.Force || !strings.Contains(a.Reason, "d-1") {
		t.Fatalf("status action promote: %+v", a)
	}

	// The raw answer: 409, JSON, code and reason.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.admin.BaseURL+"/api/v1/promote", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body api.ErrorResponse
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusConflict || body.Error.Code != "standby_not_passed" ||
		!strings.Contains(body.Error.Message, "deployment d-1") || !strings.Contains(body.Error.Message, "aborted") {
		t.Fatalf("promote: HTTP %d %+v (%v)", resp.StatusCode, body, err)
	}
	if res, err := e.chat(ctx, "llama", "x", false, ""); err != nil || res.pool != "blue" {
		t.Fatalf("traffic after a refused promote: %+v %v", res, err)
	}

	sw, err := e.admin.PromoteWith(ctx, api.PromoteRequest{Force: true, ExpectedRevision: st.Revision})
	if err != nil || sw.Live != "green" || !sw.Forced {
		t.Fatalf("forced promote: %+v %v", sw, err)
	}
	if res, err := e.chat(ctx, "llama", "x", false, ""); err != nil || res.pool != "green" {
		t.Fatalf("traffic after a forced promote: %+v %v", res, err)
	}
	h, err := e.admin.History(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := h.Events[len(h.Events)-1]
	if last.Action != "promote" || !last.Forced || last.Deployment != "d-1" {
		t.Fatalf("history of the forced promote: %+v", last)
	}

	// A guard on the revision seen before the forced promote.
	var ae *api.Error
	if _, err := e.admin.RollbackWith(ctx, api.RollbackRequest{ExpectedRevision: st.Revision}); !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "revision_mismatch" {
		t.Fatalf("guarded rollback on a stale revision: %v", err)
	}
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Rollback(ctx); !errors.As(err, &ae) || ae.StatusCode != 409 || ae.Code != "already_rolled_back" {
		t.Fatalf("second rollback: %v", err)
	}
	if s, _ := e.admin.Status(ctx); s.Live != "blue" {
		t.Fatalf("live %s after a refused second rollback", s.Live)
	}
}
