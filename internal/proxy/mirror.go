package proxy

// Mirror receives copies of live requests for shadow traffic. The proxy
// asks Want on arrival (it must be fast: one atomic load when shadowing is
// off), keeps the live answer of wanted requests, and calls Submit once
// the client has its full answer, so the client is never delayed.
type Mirror interface {
	// Want reports whether a request to pool with a body of bodyLen bytes
	// should be mirrored.
	Want(pool string, bodyLen int) bool
	// Submit hands over a finished live exchange. It must not block; the
	// Mirrored value and its slices are the mirror's from then on.
	Submit(m *Mirrored)
}

// Mirrored is a live exchange handed to the Mirror.
type Mirrored struct {
	// Path is the request path, such as /v1/chat/completions.
	Path string
	// Body is the request body as sent to the live pool.
	Body []byte
	// Live is what the data plane observed of the live answer.
	Live Observation
	// Response is the live answer's body, up to maxCapture bytes, kept
	// only for deterministic requests (temperature 0 or a seed), whose
	// texts are compared; nil otherwise.
	Response []byte
	// Truncated reports a live answer longer than maxCapture.
	Truncated bool
}

// maxCapture bounds the live answer kept for comparison.
const maxCapture = 1 << 20

type capture struct {
	b         []byte
	truncated bool
}

func getCapture() *capture { return &capture{b: make([]byte, 0, 4096)} }

func (c *capture) add(p []byte) {
	if room := maxCapture - len(c.b); room < len(p) {
		p = p[:max(room, 0)]
		c.truncated = true
	}
	c.b = append(c.b, p...)
}

// mirrored is the Mirrored value for a finished exchange; c may be nil
// (the answer was not kept).
func (c *capture) mirrored(path string, body []byte, live *Observation) *Mirrored {
	m := &Mirrored{Path: path, Body: body, Live: *live}
	if c != nil {
		m.Response, m.Truncated = c.b, c.truncated
	}
	return m
}
