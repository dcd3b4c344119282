package proxy

import (
	"bytes"
	"mime"
	"net/http"
	"strings"

	"github.com/cutover-dev/cutover/internal/route"
)

// The model field of a multipart/form-data request body: vLLM's
// /v1/audio/transcriptions and /v1/audio/translations take their model
// as a form field beside the audio file, and answer 404 to a name they do
// not serve, as the JSON endpoints do. The model-name rule (model_name)
// and client keys limited to models read it here.

// formModel is where a multipart/form-data body names its model.
type formModel struct {
	// found reports a "model" form field (not a file); when the body has
	// several, the last, as Starlette's form parser keeps (vLLM runs on
	// it).
	found bool
	// vs and ve delimit the field's value in the body.
	vs, ve int
}

// formBoundary returns the boundary of a multipart/form-data Content-Type
// value ("" when it has no usable one), and whether the value names a
// multipart/form-data body at all.
func formBoundary(contentType string) (boundary string, isForm bool) {
	if contentType == "" || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "multipart/form-data") {
		return "", false
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return "", true
	}
	b := params["boundary"]
	if len(b) == 0 || len(b) > 70 { // RFC 2046 section 5.1.1
		return "", true
	}
	return b, true
}

// scanFormModel finds the "model" field of a multipart/form-data body
// with the given boundary. It reports ok false for a body it cannot read
// as one (then the body goes on untouched, and the replica judges it).
// Parts are CRLF-delimited as RFC 7578 says; a part's headers end at its
// first empty line; a part whose Content-Disposition names a filename is
// a file, not a field.
func scanFormModel(b []byte, boundary string) (f formModel, ok bool) {
	dash := make([]byte, 0, 4+len(boundary))
	dash = append(dash, "--"...)
	dash = append(dash, boundary...)
	// The first delimiter opens the body: a preamble (which clients do
	// not send, and parsers read differently) makes it unread.
	if !bytes.HasPrefix(b, dash) {
		return formModel{}, false
	}
	i := 0
	delim := append([]byte("\r\n"), dash...) // before every later part
	for {
		i += len(dash)
		closing := bytes.HasPrefix(b[i:], []byte("--"))
		if closing {
			i += 2
		}
		// Transport padding, then the line's end (after the close
		// delimiter: or the body's).
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		switch {
		case closing && (i == len(b) || bytes.HasPrefix(b[i:], []byte("\r\n"))):
			return f, true // an epilogue, if any, is not read
		case closing || !bytes.HasPrefix(b[i:], []byte("\r\n")):
			return formModel{}, false
		}
		i += 2
		next := bytes.Index(b[i:], delim)
		if next < 0 {
			return formModel{}, false
		}
		part := b[i : i+next]
		var head []byte
		vs := i + 2 // a part without header lines
		if !bytes.HasPrefix(part, []byte("\r\n")) {
			he := bytes.Index(part, []byte("\r\n\r\n"))
			if he < 0 {
				return formModel{}, false
			}
			head, vs = part[:he], i+he+4
		}
		model, ok := isModelField(head)
		if !ok {
			return formModel{}, false
		}
		if model {
			f = formModel{found: true, vs: vs, ve: i + next}
		}
		i += next + 2
	}
}

// isModelField reports whether a part's header lines say it is the form
// field "model" (a Content-Disposition naming "model", no filename; its
// type is not looked at, as Starlette does not look at it); ok false for
// a malformed header line, a Content-Disposition that does not parse or
// comes twice.
func isModelField(head []byte) (model, ok bool) {
	seen := false
	for len(head) > 0 {
		line := head
		if j := bytes.Index(head, []byte("\r\n")); j >= 0 {
			line, head = head[:j], head[j+2:]
		} else {
			head = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) || hasCTLButTab(line[colon+1:]) {
			return false, false
		}
		if !equalFold(line[:colon], "Content-Disposition") {
			continue
		}
		_, params, err := mime.ParseMediaType(string(line[colon+1:]))
		if err != nil || seen {
			return false, false
		}
		seen = true
		_, file := params["filename"]
		model = params["name"] == "model" && !file
	}
	return model, true
}

// readsForm reports whether the model-name rule or a client key limited
// to models needs the model of this request's body, and the body is not
// a JSON object: the caller then gives scanForm the request's
// Content-Type.
func (m *bodyModel) readsForm(t *route.Table, key int, method string, b []byte) bool {
	if t.ModelName == "" && key == noKey || method != http.MethodPost || len(b) == 0 {
		return false
	}
	_, err := m.scan(b)
	return err != nil
}

// scanForm reads the model of a body that is not a JSON object from its
// multipart form, when contentType (the request's Content-Type) says it
// is one. A form it cannot read exactly is an error (formErr): a parser
// further on that reads it otherwise (vLLM's, python-multipart) could find
// a model the gateway did not see, past the model-name rule and a key's
// models.
func (m *bodyModel) scanForm(b []byte, contentType string) {
	boundary, isForm := formBoundary(contentType)
	switch {
	case !isForm:
		return
	case boundary == "":
		m.formErr = "its Content-Type names no usable boundary (1 to 70 characters)"
		return
	}
	var ok bool
	if m.form, ok = scanFormModel(b, boundary); !ok {
		m.formErr = "its parts are not delimited as RFC 7578 says (CRLF lines, the boundary first, one Content-Disposition per part)"
	}
}

// formError is the 400 for a form scanForm could not read, nil when it
// could or the body is no form.
func (m *bodyModel) formError() *apiError {
	if m.formErr == "" {
		return nil
	}
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_form",
		msg: "The multipart form could not be read: " + m.formErr + ". The gateway reads its model field and sends on no form it cannot read."}
}

// formValue is the form's model field's value ("" when none).
func (m *bodyModel) formValue(b []byte) string {
	if !m.form.found {
		return ""
	}
	return string(b[m.form.vs:m.form.ve])
}

// rewriteForm applies the model-name rule to the form's model field: the
// client-facing name becomes the pool's model id, the pool's own id
// passes, a field with any other name is refused (ok false, that name).
// A form without the field goes on as it is: vLLM then serves the model
// it has (the pool's).
func (m *bodyModel) rewriteForm(b []byte, clientName, poolModel string) (out []byte, other string, ok bool) {
	if !m.form.found {
		return b, "", true
	}
	switch v := b[m.form.vs:m.form.ve]; string(v) {
	case poolModel:
		return b, "", true
	case clientName, "": // "": vLLM serves its own model
		out = make([]byte, 0, len(b)-len(v)+len(poolModel))
		out = append(out, b[:m.form.vs]...)
		out = append(out, poolModel...)
		return append(out, b[m.form.ve:]...), "", true
	default:
		return nil, string(v), false
	}
}
