package pool

import "testing"

// TestReplicaKey: spellings of one server share a key. Regression: a
// port with a leading zero and an IPv4-mapped IPv6 address were other
// replicas, so `cutover deploy --replica http://127.0.0.1:08000` put the
// live pool's own replica http://127.0.0.1:8000 into the new version.
func TestReplicaKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"http://127.0.0.1:8000", "http://127.0.0.1:08000", true},
		{"http://127.0.0.1:8000", "http://[::ffff:127.0.0.1]:8000", true},
		{"http://[::1]:8000", "http://[0:0::1]:8000", true},
		{"http://[::1]:8000", "http://[::1]:08000", true},
		{"http://GPU-1:8000", "http://gpu-1:8000", true},
		{"http://h:80", "http://h", true},
		{"http://h:080", "http://h", true},
		{"https://h:443", "https://h", true},
		{"http://127.0.0.1:8000", "http://127.0.0.1:8001", false},
		{"http://127.0.0.1:8000", "https://127.0.0.1:8000", false},
		{"http://127.0.0.1:8000", "http://127.0.0.2:8000", false},
		{"http://h:8000/a", "http://h:8000/b", false},
	}
	for _, tt := range tests {
		a, err := NormalizeURL(tt.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NormalizeURL(tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := ReplicaKey(a) == ReplicaKey(b); got != tt.same {
			t.Errorf("ReplicaKey(%q) = %q, ReplicaKey(%q) = %q: same %v, want %v", tt.a, ReplicaKey(a), tt.b, ReplicaKey(b), got, tt.same)
		}
	}
}
