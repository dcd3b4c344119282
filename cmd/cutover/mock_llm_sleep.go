package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

func init() {
	mockLLMFlags["Sleep.SleepDelay"] = "sleep-delay"
	mockLLMFlags["Sleep.WakeDelay"] = "wake-delay"
	mockLLMFlags["Sleep.LoadDelay"] = "load-delay"
}

// addMockSleepFlags adds vLLM's sleep-mode flags to the mock-llm command.
// The routes exist only with VLLM_SERVER_DEV_MODE set to a non-zero
// integer in the environment, as in vLLM; mockSleepDevMode reads it.
func addMockSleepFlags(cmd *cobra.Command, c *mockllm.SleepConfig) {
	f := cmd.Flags()
	f.BoolVar(&c.Enabled, "enable-sleep-mode", false, "vLLM's sleep mode: POST /sleep, /wake_up, GET /is_sleeping (routes need VLLM_SERVER_DEV_MODE=1)")
	f.DurationVar(&c.SleepDelay, "sleep-delay", 0, "how long POST /sleep takes (offloading the weights)")
	f.DurationVar(&c.WakeDelay, "wake-delay", 0, "how long POST /wake_up takes")
	f.DurationVar(&c.LoadDelay, "load-delay", 0, "how long collective_rpc reload_weights takes (after a level-2 sleep)")
	cmd.Long += `

Sleep mode, as vLLM's: with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1
in the environment, POST /sleep?level=1|2&mode=abort|wait|keep,
POST /wake_up[?tags=weights|kv_cache], GET /is_sleeping,
POST /collective_rpc {"method":"reload_weights"} and POST /reset_prefix_cache.
Without VLLM_SERVER_DEV_MODE=1 these routes are 404. Asleep, completions
answer 503 ModelSleepingError; after a level-2 sleep, answers are wrong
until reload_weights.`
}

// mockSleepDevMode reports whether VLLM_SERVER_DEV_MODE enables vLLM's
// development routes: vLLM reads it as an integer, non-zero meaning on.
func mockSleepDevMode() bool {
	n, err := strconv.Atoi(strings.TrimSpace(os.Getenv("VLLM_SERVER_DEV_MODE")))
	return err == nil && n != 0
}
