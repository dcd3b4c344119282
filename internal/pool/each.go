package pool

import (
	"context"
	"sync"
)

// CheckEach runs check on every replica of rs at once and returns their
// errors in the order of rs. ctx bounds them all.
func CheckEach(ctx context.Context, rs []*Replica, check func(context.Context, *Replica) error) []error {
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { errs[i] = check(ctx, r) })
	}
	wg.Wait()
	return errs
}
