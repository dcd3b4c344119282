package proxy

import "github.com/cutover-dev/cutover/internal/pool"

// pick asks the picker for a replica of rs, passing the request body to a
// pool.BodyPicker (the llm balancer routes by the prompt's prefix).
func (h *Handler) pick(rs []*pool.Replica, skip *pool.Replica, body []byte) *pool.Replica {
	if h.bodyPicker != nil {
		return h.bodyPicker.PickBody(rs, skip, body)
	}
	return h.picker.Pick(rs, skip)
}
