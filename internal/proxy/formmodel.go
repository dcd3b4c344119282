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
	if err != nil || mt != "multipart/form-data" || starParam(contentType) {
		return "", true
	}
	// Starlette decodes the fields' names and values with the charset
	// given here ("+AG0-odel" is "model" in UTF-7): only those whose
	// ASCII reads as it is.
	switch cs := strings.ToLower(params["charset"]); cs {
	case "", "utf-8", "utf8", "us-ascii":
	default:
		return "", true
	}
	b := params["boundary"]
	if len(b) == 0 || len(b) > 70 { // RFC 2046 section 5.1.1
		return "", true
	}
	return b, true
}

// maxFormParts bounds the parts of a form the gateway reads: an audio
// request has a handful; thousands of tiny ones only cost CPU.
const maxFormParts = 256

// starParam reports a parameter name with a '*' (RFC 2231's name*= and
// name*0=) in a header value, outside quoted strings: Go's mime package
// and python-multipart read those differently (one drops a charset it
// does not know, the other decodes it, or ignores the parameter), and RFC
// 7578 section 4.2 says a form must not use them.
func starParam(v string) bool {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '*' && !quoted:
			return true
		}
	}
	return false
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
	parts := 0
	for {
		i += len(dash)
		closing := bytes.HasPrefix(b[i:], []byte("--"))
		if closing {
			i += 2
		}
		// The line's end at once (after the close delimiter: or the
		// body's). RFC 2046 allows transport padding (spaces) before it;
		// python-multipart does not, and reads such a line as data, so a
		// form with any is not read.
		switch {
		case closing && (i == len(b) || bytes.HasPrefix(b[i:], []byte("\r\n"))):
			return f, true // an epilogue, if any, is not read
		case closing || !bytes.HasPrefix(b[i:], []byte("\r\n")):
			return formModel{}, false
		}
		if parts++; parts > maxFormParts {
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
		v := string(line[colon+1:])
		_, params, err := mime.ParseMediaType(v)
		if err != nil || seen || starParam(v) {
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
// a JSON object (as the gateway reads JSON: UTF-8): the caller then gives
// scanForm the request's Content-Type.
func (m *bodyModel) readsForm(t *route.Table, key int, b []byte) bool {
	if t.ModelName == "" && key == noKey || len(b) == 0 {
		return false
	}
	_, err := m.scan(b)
	return err != nil
}

// wideJSON reports a body Python's json.loads would read as JSON in
// UTF-16 or UTF-32 (json.detect_encoding: a byte order mark, or a NUL in
// the first four bytes, which UTF-32-BE's mark has too): vLLM reads such
// a body, the gateway does not.
func wideJSON(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0xFE, 0xFF}) || bytes.HasPrefix(b, []byte{0xFF, 0xFE}) ||
		bytes.IndexByte(b[:min(len(b), 4)], 0) >= 0
}

// scanForm reads the model of a body that is not a JSON object from its
// multipart form, when contentType (the request's Content-Type) says it
// is one. It returns the 400 for a form it cannot read exactly, or a body
// in UTF-16 or UTF-32: a parser further on that reads it otherwise
// (vLLM's, python-multipart) could find a model the gateway did not see,
// past the model-name rule and a key's models.
func (m *bodyModel) scanForm(b []byte, contentType string) *apiError {
	boundary, isForm := formBoundary(contentType)
	var why string
	switch {
	case !isForm && wideJSON(b):
		return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_json",
			msg: "The request body is not UTF-8: the gateway reads JSON bodies in UTF-8 only (their model field), and sends on no body it cannot read."}
	case !isForm:
		return nil
	case boundary == "":
		why = "its Content-Type names no usable boundary (1 to 70 characters)"
	default:
		var ok bool
		if m.form, ok = scanFormModel(b, boundary); ok {
			return nil
		}
		why = "its parts are not delimited as RFC 7578 says (CRLF lines, the boundary first, one Content-Disposition per part)"
	}
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_form",
		msg: "The multipart form could not be read: " + why + ". The gateway reads its model field and sends on no form it cannot read."}
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
