package config

import "testing"

// TestListenClash: listeners that cannot both bind clash however their
// addresses are written; different addresses or ports, and port 0, do not.
func TestListenClash(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"localhost:8080", "127.0.0.1:8080", true},
		{"LOCALHOST:8080", "[::1]:8080", true},
		{":8080", "0.0.0.0:8080", true},
		{"[::]:8080", "10.0.0.1:8080", true},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
		{"gw.example:8080", "GW.example:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"localhost:8080", "10.0.0.1:8080", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{":0", ":0", false},
		{"nonsense", ":8080", false},
	}
	for _, tt := range tests {
		if got := listenClash(tt.a, tt.b); got != tt.want {
			t.Errorf("listenClash(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := listenClash(tt.b, tt.a); got != tt.want {
			t.Errorf("listenClash(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}
