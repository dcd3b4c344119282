package proxy

import (
	"fmt"
	"net/http"
	"strconv"
)

// hopsHeader counts the cutover gateways a request went through: each
// sends its replica the count it got plus one (the client's own value
// replaced), and refuses a request that went through maxHops already. A
// pool whose replica is a gateway itself (or two gateways each other's
// replica) is a loop that would otherwise open connections to itself
// until it runs out of file descriptors.
const hopsHeader = "X-Cutover-Hops"

// maxHops is how many gateways a request may have gone through (a gateway
// in front of gateways is fine; a loop ends here).
const maxHops = 8

// parseHops is a hops header's value: 0 when absent or not a number,
// capped at maxHops.
func parseHops[T ~string | ~[]byte](v T) int {
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		if n = n*10 + int(c-'0'); n >= maxHops {
			return maxHops
		}
	}
	return n
}

// hopsOf is the hops header's value in h.
func hopsOf(h http.Header) int { return parseHops(headerValue(h, hopsHeader)) }

// loopCheck refuses a request that went through maxHops gateways.
func loopCheck(hops int) *apiError {
	if hops < maxHops {
		return nil
	}
	return &apiError{status: http.StatusLoopDetected, typ: "server_error", code: "loop_detected",
		msg: fmt.Sprintf("the request went through %d cutover gateways (%s): a pool's replica leads back to a gateway", hops, hopsHeader)}
}

// appendHops appends the header a gateway sends its replica for a
// request that came with hops.
func appendHops(b []byte, hops int) []byte {
	b = append(b, hopsHeader+": "...)
	b = strconv.AppendInt(b, int64(hops+1), 10)
	return append(b, "\r\n"...)
}
