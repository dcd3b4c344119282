package rollout

import (
	"context"
	"fmt"

	"github.com/cutover-dev/cutover/internal/store"
)

// Follow makes rec the current state when it is newer than the one held:
// another gateway of the fleet wrote it (or this one, seen again through
// the store's watch). It rebuilds the pools and hands the data plane a new
// routing table when the live pool or a pool changed, and makes Run (when
// it runs) reconcile at once. An equal revision is ignored; an older one
// is an error wrapping store.ErrBehind (the store went back in time: its
// state is not followed).
//
// It does not wait for a transition of this gateway in progress (a
// before_promote hook may take minutes): the data plane follows the fleet
// meanwhile, and that transition's write then fails on the revision.
func (c *Controller) Follow(ctx context.Context, rec store.Record) error {
	st, err := decodeState(rec.Data)
	if err != nil {
		return fmt.Errorf("follow revision %d: %w", rec.Revision, err)
	}
	if _, ok := c.opts.Pools[st.Live]; !ok {
		return fmt.Errorf("follow revision %d: live pool %q is not configured", rec.Revision, st.Live)
	}
	c.mu.Lock()
	if rec.Revision <= c.rev {
		held := c.rev
		c.mu.Unlock()
		if rec.Revision < held {
			return fmt.Errorf("follow revision %d: %w: this gateway holds revision %d", rec.Revision, store.ErrBehind, held)
		}
		return nil
	}
	prev := c.st
	c.st, c.rev = st, rec.Revision
	c.rebuildPoolsLocked()
	c.mu.Unlock()
	c.poke()
	if routingChanged(&prev, &st) {
		if err := c.apply(ctx); err != nil {
			return fmt.Errorf("apply revision %d (live %s): %w", rec.Revision, st.Live, err)
		}
	}
	return nil
}
