package gateway_test

import (
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCutoverUnderLoad promotes and rolls back the builtin gateway while
// 200 clients send short requests and two-second streams, with a client
// that never retries. Nothing may fail, every stream must end with [DONE]
// and intact text from the pool that started it, and every request that
// starts after a switch returned must land on the new pool.
func TestCutoverUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{servedName: servedName, mock: mockllm.Config{ITL: 100 * time.Millisecond, Tokens: loadStreamTokens}})
	cutoverUnderLoad(t, &lbEnv{env: e, lb: e.traffic, client: newLBClient(0)}, 200)
}
