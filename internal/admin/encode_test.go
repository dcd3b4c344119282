package admin

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestUnencodableAnswerIs500JSON: a value json cannot write (an infinite
// gate threshold once made the status and the deployment record such a
// value) is a 500 with a JSON error, not a 200 with an empty body that
// every client reads as "bad JSON".
func TestUnencodableAnswerIs500JSON(t *testing.T) {
	s, err := New(&stubCtrl{}, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.HandleJSON("GET /api/v1/inf", func(*http.Request) (any, error) {
		return api.Gate{Name: "latency_p95_ratio", Threshold: math.Inf(1)}, nil
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/inf", nil)
	req.Header.Set("Authorization", "Bearer "+stubToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d (%q), want 500", res.StatusCode, body)
	}
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "internal" || e.Error.Message == "" {
		t.Fatalf("body %q (%v): want a JSON error with code internal and a message", body, err)
	}
}
