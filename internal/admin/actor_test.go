package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestActorValidUTF8: the actor the history records is valid UTF-8 of at
// most 100 bytes. Regression: the cut at 100 bytes split a character in
// two, and the history kept the broken byte (shown as U+FFFD).
func TestActorValidUTF8(t *testing.T) {
	ctrl := &recordingCtrl{}
	s, err := New(ctrl, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, tc := range []struct{ header, want string }{
		{"ops", "ops"},
		{"", "api"},
		{strings.Repeat("a", 99) + "é", strings.Repeat("a", 99)},
		{strings.Repeat("a", 98) + "é", strings.Repeat("a", 98) + "é"},
		{strings.Repeat("a", 120), strings.Repeat("a", 100)},
		{"op\xffs", "ops"},
		{"\xff", "api"},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/promote", nil)
		req.Header.Set("Authorization", "Bearer "+stubToken)
		req.Header.Set("X-Cutover-Actor", tc.header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ctrl.mu.Lock()
		got := ctrl.seen[len(ctrl.seen)-1]
		ctrl.mu.Unlock()
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("X-Cutover-Actor %q: actor %q, want %q", tc.header, got, tc.want)
		}
	}
}
