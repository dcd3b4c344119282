package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
)

// TestPoolMaxReplicas: a configured pool holds at most pool.MaxReplicas
// replicas; more is an error naming pools.<pool>.replicas and the limit.
func TestPoolMaxReplicas(t *testing.T) {
	for _, n := range []int{pool.MaxReplicas, pool.MaxReplicas + 1} {
		urls := make([]string, n)
		for i := range urls {
			urls[i] = fmt.Sprintf("http://127.0.1.1:%d", 10000+i)
		}
		y := "pools:\n  blue: {model: m-1, replicas: [http://127.0.0.1:8001]}\n  green: {model: m-2, replicas: [" + strings.Join(urls, ", ") + "]}\n"
		_, err := config.Parse([]byte(y))
		if n == pool.MaxReplicas {
			if err != nil {
				t.Fatalf("%d replicas: %v", n, err)
			}
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Fields[0].Key != "pools.green.replicas" || !strings.Contains(err.Error(), fmt.Sprint(pool.MaxReplicas)) {
			t.Fatalf("%d replicas: %v, want an error for pools.green.replicas naming %d", n, err, pool.MaxReplicas)
		}
	}
}
