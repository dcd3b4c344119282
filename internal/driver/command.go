package driver

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// maxOutput bounds how much of a command's output an error quotes.
const maxOutput = 2000

// runCommand runs argv (no shell) bounded by timeout and returns its
// combined output. The error quotes the argv, the exit status and the
// output, which is what an operator needs to see in status and history.
func runCommand(ctx context.Context, argv []string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child that keeps the pipes open must not hang us
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err == nil {
		return text, nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
	}
	if len(text) > maxOutput {
		text = "..." + text[len(text)-maxOutput:]
	}
	if text == "" {
		return "", fmt.Errorf("%q: %w", argv, err)
	}
	return text, fmt.Errorf("%q: %w: %s", argv, err, text)
}
