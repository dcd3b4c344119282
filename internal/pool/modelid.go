package pool

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckModelID refuses a model id no replica can serve: one holding a
// control character (a newline from `$(cat file)`, a terminal escape) or
// bytes that are not UTF-8, which would reach operators' terminals and
// logs through status, history and the demo's banner; and one starting
// with "-", which an agent's command ({model} in `vllm serve {model}`)
// would take for an option (--trust-remote-code...).
func CheckModelID(id string) error {
	if strings.HasPrefix(id, "-") {
		return fmt.Errorf("model id %q starts with \"-\": a replica's command line would read it as an option", id)
	}
	for i, r := range id {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(id[i:]); size == 1 {
				return fmt.Errorf("model id %q is not UTF-8 (byte %d)", id, i)
			}
		case unicode.IsControl(r):
			return fmt.Errorf("model id %q holds a control character (%U at byte %d)", id, r, i)
		}
	}
	return nil
}
