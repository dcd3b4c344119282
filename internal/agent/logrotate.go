package agent

import (
	"fmt"
	"io"
	"os"
	"time"
)

// logCheckEvery is how often a replica's log size is checked.
const logCheckEvery = 10 * time.Second

// rotateLog keeps r's log under cfg.LogMaxMB until the replica is gone.
// The replica writes to the file itself (O_APPEND), so rotation copies
// and truncates: it never has to reopen anything.
func (a *Agent) rotateLog(r *Replica, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		if err := rotateIfLarge(r.Log, int64(a.cfg.LogMaxMB)<<20); err != nil {
			a.log.Warn("agent: log rotation failed", "id", r.ID, "log", r.Log, "err", err)
		}
	}
}

// rotateIfLarge copies path to path.1 and truncates it when it is larger
// than max bytes. A line written between the copy and the truncation can
// be lost (copytruncate's known gap).
func rotateIfLarge(path string, max int64) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= max {
		return nil // a missing log is not an error here
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path+".1", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := src.Truncate(0); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	return nil
}
