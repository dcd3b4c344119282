//go:build !race

package proxy

// raceOn: the race detector is on (goroutine stacks are larger).
const raceOn = false
