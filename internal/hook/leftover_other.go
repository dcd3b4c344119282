//go:build !linux

package hook

import (
	"context"
	"fmt"
	"time"
)

// EndLeftover would end a hook's process group left behind by a cutover
// that died; without /proc it cannot tell that the group still belongs to
// run runID (its id may have been reused), so it leaves it alone and says
// so.
func EndLeftover(_ context.Context, pgid int, runID string, _ time.Duration) (bool, error) {
	if pgid <= 1 || runID == "" {
		return false, nil
	}
	return false, fmt.Errorf("process group %d of hook run %s: cannot tell on this platform whether it still runs the hook; not signalled", pgid, runID)
}
