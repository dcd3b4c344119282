package pool

import (
	"strings"
	"testing"
)

func TestNormalizeURL(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "http://127.0.0.1:8000/", want: "http://127.0.0.1:8000"},
		{in: "https://gpu-1.internal:8000/v0", want: "https://gpu-1.internal:8000/v0"},
		// Regression: these said "first path segment in URL cannot
		// contain colon" and "must start with http://".
		{in: "127.0.0.1:8000", err: `"127.0.0.1:8000" is missing http:// or https:// (such as http://127.0.0.1:8000)`},
		{in: "localhost:8000", err: "missing http:// or https://"},
		{in: "gpu-1", err: "missing http:// or https://"},
		{in: "ftp://host:21", err: "must start with http:// or https://"},
		{in: "http://:8000", err: "has no host"},
		{in: "http://h:8000?x=1", err: "must not carry a query"},
	}
	for _, tt := range tests {
		got, err := NormalizeURL(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("NormalizeURL(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
}
