package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// recordingCtrl is stubCtrl that keeps the requests of the switches.
type recordingCtrl struct {
	stubCtrl
	mu   sync.Mutex
	got  []any
	seen []string // actors
}

func (c *recordingCtrl) record(actor string, req any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, req)
	c.seen = append(c.seen, actor)
}

func (c *recordingCtrl) Promote(_ context.Context, actor string, req api.PromoteRequest) (api.SwitchResult, error) {
	c.record(actor, req)
	return api.SwitchResult{Action: "promote"}, nil
}

func (c *recordingCtrl) Rollback(_ context.Context, actor string, req api.RollbackRequest) (api.SwitchResult, error) {
	c.record(actor, req)
	return api.SwitchResult{Action: "rollback"}, nil
}

func (c *recordingCtrl) Deploy(_ context.Context, actor string, req api.DeployRequest) (api.DeployResult, error) {
	c.record(actor, req)
	return api.DeployResult{}, nil
}

func (c *recordingCtrl) Abort(_ context.Context, actor string, req api.AbortRequest) (api.Deployment, error) {
	c.record(actor, req)
	return api.Deployment{}, nil
}

func (c *recordingCtrl) Retire(_ context.Context, actor string, req api.RetireRequest) (api.Deployment, error) {
	c.record(actor, req)
	return api.Deployment{}, nil
}

// TestSwitchBodies: each switch reads its body (force, to,
// expected_revision; empty means the zero value) and refuses unknown
// fields with 400 before anything happens.
func TestSwitchBodies(t *testing.T) {
	ctrl := &recordingCtrl{}
	s, err := New(ctrl, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, tc := range []struct {
		path, body string
		status     int
		want       any
	}{
		{"/api/v1/promote", "", 200, api.PromoteRequest{}},
		{"/api/v1/promote", `{"force":true,"expected_revision":7}`, 200, api.PromoteRequest{Force: true, ExpectedRevision: 7}},
		{"/api/v1/promote", `{"forse":true}`, 400, nil},
		{"/api/v1/rollback", `{"to":"green","expected_revision":3}`, 200, api.RollbackRequest{To: "green", ExpectedRevision: 3}},
		{"/api/v1/rollback", `{"to":"green"} {}`, 400, nil},
		{"/api/v1/rollback", `{"now":true}`, 200, api.RollbackRequest{Now: true}},
		// Only an object is a request: null once switched pools as if
		// the body were empty (a regression).
		{"/api/v1/promote", `null`, 400, nil},
		{"/api/v1/rollback", ` [] `, 400, nil},
		{"/api/v1/abort", `7`, 400, nil},
		{"/api/v1/abort", `{"expected_revision":2}`, 200, api.AbortRequest{ExpectedRevision: 2}},
		{"/api/v1/retire", `{"force":true}`, 200, api.RetireRequest{Force: true}},
	} {
		t.Run(tc.path+" "+tc.body, func(t *testing.T) {
			ctrl.mu.Lock()
			ctrl.got = nil
			ctrl.mu.Unlock()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+stubToken)
			req.Header.Set("X-Cutover-Actor", "ops")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			ctrl.mu.Lock()
			defer ctrl.mu.Unlock()
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.want == nil {
				if len(ctrl.got) != 0 {
					t.Fatalf("a refused body reached the controller: %+v", ctrl.got)
				}
				return
			}
			if len(ctrl.got) != 1 || ctrl.got[0] != tc.want || ctrl.seen[len(ctrl.seen)-1] != "ops" {
				t.Fatalf("controller got %+v, want %+v", ctrl.got, tc.want)
			}
		})
	}
}
