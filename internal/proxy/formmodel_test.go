package proxy

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/auth"
)

// form builds a multipart body of fields (name, value) and, when file is
// not "", an audio file part, with boundary "b0undary".
func form(file string, fields ...string) string {
	var b strings.Builder
	w := multipart.NewWriter(&b)
	_ = w.SetBoundary("b0undary")
	if file != "" {
		fw, _ := w.CreateFormFile("file", "a.wav")
		_, _ = fw.Write([]byte(file))
	}
	for i := 0; i+1 < len(fields); i += 2 {
		_ = w.WriteField(fields[i], fields[i+1])
	}
	_ = w.Close()
	return b.String()
}

func TestScanFormModel(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
		model      string // "" with found false
	}{
		{"model after the file", form("RIFF\r\n--b0und\r\n\r\n", "model", "llama", "language", "en"), true, "llama"},
		{"no model", form("RIFF", "language", "en"), true, ""},
		{"the last of two", form("", "model", "a", "model", "b"), true, "b"},
		{"empty value", form("", "model", ""), true, ""},
		{"a file named model is not the field", "--b0undary\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m\"\r\n\r\nllama\r\n--b0undary--\r\n", true, ""},
		{"unquoted name, other header case", "--b0undary\r\ncontent-disposition: form-data; name=model\r\n\r\nllama\r\n--b0undary--", true, "llama"},
		{"a preamble is not read", "ignored\r\n--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", false, ""},
		{"no close delimiter", "--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama", false, ""},
		{"bare LF", "--b0undary\nContent-Disposition: form-data; name=\"model\"\n\nllama\n--b0undary--\n", false, ""},
		// Starlette does not look at the disposition's type.
		{"another disposition type names it too", "--b0undary\r\nContent-Disposition: attachment; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", true, "llama"},
		{"a parameter twice", "--b0undary\r\nContent-Disposition: form-data; name=\"x\"; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", false, ""},
		{"Content-Disposition twice", "--b0undary\r\nContent-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", false, ""},
		{"a leading CRLF", "\r\n--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", false, ""},
		{"junk after the close delimiter", "--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--junk", false, ""},
		{"the boundary's prefix in the data", "--b0undary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nab\r\n--b0undaryX\r\n--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--", false, ""},
		{"other boundary", "--other\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--other--\r\n", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := scanFormModel([]byte(tc.body), "b0undary")
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			got := ""
			if f.found {
				got = tc.body[f.vs:f.ve]
			}
			if got != tc.model || f.found != (tc.model != "" || tc.name == "empty value") {
				t.Fatalf("model %q (found %v), want %q", got, f.found, tc.model)
			}
		})
	}
}

// FuzzScanFormModel: what scanFormModel reads as a form, Go's
// mime/multipart reads as one too, with the same last "model" field.
func FuzzScanFormModel(f *testing.F) {
	f.Add(form("RIFF", "model", "llama"))
	f.Add(form("", "model", "a", "model", "b"))
	f.Add("--b0undary\r\ncontent-disposition: form-data; name=model\r\n\r\nllama\r\n--b0undary--")
	f.Add("x\r\n--b0undary \r\n\r\nv\r\n--b0undary--")
	f.Fuzz(func(t *testing.T, body string) {
		got, ok := scanFormModel([]byte(body), "b0undary")
		if !ok {
			return
		}
		r := multipart.NewReader(strings.NewReader(body), "b0undary")
		want, found := "", false
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("scanFormModel read %q as a form; mime/multipart: %v", body, err)
			}
			v, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("scanFormModel read %q as a form; mime/multipart: %v", body, err)
			}
			// The name whatever the disposition's type, as Starlette
			// reads it (FormName wants form-data).
			_, params, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
			if _, file := params["filename"]; params["name"] == "model" && !file {
				want, found = string(v), true
			}
		}
		if found != got.found || found && body[got.vs:got.ve] != want {
			t.Fatalf("body %q: model %v %q, mime/multipart: %v %q", body, got.found, body[got.vs:got.ve], found, want)
		}
	})
}

// TestFormModelRewrite: vLLM's audio endpoints take model as a form field;
// with model_name, the client-facing name in it becomes the pool's model
// id on both paths, another name gets 404 model_not_found, and a key
// limited to models is held to the form's model as to a JSON one.
func TestFormModelRewrite(t *testing.T) {
	backend := newEchoBackend(t)
	for _, fe := range frontends {
		for _, tc := range []struct {
			name, modelName, model, auth string
			status                       int
			sent                         string // the model field the replica got
		}{
			{"client name", "llama", "llama", "", 200, "model-v1"},
			{"pool's own id", "llama", "model-v1", "", 200, "model-v1"},
			{"other name", "llama", "gpt-4o-transcribe", "", 404, ""},
			{"limited key, other model", "llama", "sql-lora", "Bearer sk-ci", 403, ""},
			{"limited key, its model, no model_name", "", "model-v1", "Bearer sk-ci", 200, "model-v1"},
			// A form the gateway cannot read exactly is refused: another
			// parser could find a model it did not see (a 71-character
			// boundary; a leading CRLF, which python-multipart skips).
			{"unreadable form, limited key", "llama", "sql-lora", "Bearer sk-ci", 400, "crlf"},
			{"unreadable form, model_name", "llama", "gpt-4o", "", 400, "boundary71"},
		} {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				opts := Options{}
				if tc.auth != "" {
					opts.ClientAuth = testKeys(t)
				}
				addr := fe.start(t, newHandler(t, opts, tc.modelName, backend.URL))
				body := form("RIFF\x00\x01audio", "model", tc.model, "response_format", "json")
				ctype := "multipart/form-data; boundary=b0undary"
				switch tc.sent {
				case "crlf":
					body = "\r\n" + body
				case "boundary71":
					long := strings.Repeat("b", 71)
					body, ctype = strings.ReplaceAll(body, "b0undary", long), "multipart/form-data; boundary="+long
				}
				resp, b := send(t, "http://"+addr+"/v1/audio/transcriptions", body, "Content-Type", ctype, "Authorization", tc.auth)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
				}
				if tc.status != 200 {
					checkAPIError(t, b, map[int]string{404: "model_not_found", 403: "model_not_allowed", 400: "bad_form"}[tc.status])
					return
				}
				e := decodeEcho(t, b)
				mr := multipart.NewReader(strings.NewReader(e.Body), "b0undary")
				fm, err := mr.ReadForm(1 << 20)
				if err != nil {
					t.Fatalf("replica got no form: %v (%q)", err, e.Body)
				}
				if got := fm.Value["model"]; len(got) != 1 || got[0] != tc.sent {
					t.Errorf("replica got model %q, want %q", got, tc.sent)
				}
				if fh := fm.File["file"]; len(fh) != 1 || fh[0].Size != int64(len("RIFF\x00\x01audio")) {
					t.Errorf("replica got file parts %v", fh)
				}
				if want := strings.Replace(body, "\r\n\r\n"+tc.model+"\r\n", "\r\n\r\n"+tc.sent+"\r\n", 1); !bytes.Equal([]byte(e.Body), []byte(want)) {
					t.Errorf("body changed beyond the model field:\n got %q\nwant %q", e.Body, want)
				}
			})
		}
	}
}

// TestInferenceRoutesOutsideV1: vLLM's client routes outside /v1/
// (tokenizer, pooling, scoring, SageMaker's) reach the live pool with the
// model-name rule applied; its operator routes outside /v1/ do not reach
// it; /ping is answered as /health, without a key.
func TestInferenceRoutesOutsideV1(t *testing.T) {
	backend := newEchoBackend(t)
	for _, fe := range frontends {
		addr := fe.start(t, newHandler(t, Options{ClientAuth: testKeys(t)}, "llama", backend.URL))
		do := func(method, path, body, auth string) (int, string) {
			req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		for _, path := range []string{"/tokenize", "/detokenize", "/version", "/pooling", "/classify", "/score", "/rerank", "/v2/rerank", "/invocations"} {
			status, body := do("POST", path, `{"model":"llama","prompt":"hi"}`, "Bearer sk-team")
			if status != 200 {
				t.Fatalf("%s %s: status %d, want the replica's 200: %s", fe.name, path, status, body)
			}
			if e := decodeEcho(t, body); e.URI != path || e.Body != `{"model":"model-v1","prompt":"hi"}` {
				t.Errorf("%s %s: the replica got %s %q", fe.name, path, e.URI, e.Body)
			}
		}
		for _, path := range []string{"/metrics", "/sleep?level=1", "/wake_up", "/load", "/collective_rpc", "/v2/models", "/tokenize/../metrics",
			"/v1/load_lora_adapter", "/v1/unload_lora_adapter"} {
			status, body := do("POST", path, `{}`, "Bearer sk-team")
			if status != 404 || strings.Contains(body, `"URI"`) {
				t.Errorf("%s %s: status %d, want 404 unknown_path: %s", fe.name, path, status, body)
				continue
			}
			checkAPIError(t, body, "unknown_path")
		}
		if status, body := do("GET", "/ping", "", ""); status != 200 || body != "" {
			t.Errorf("%s GET /ping without a key: %d %q, want 200 from the gateway", fe.name, status, body)
		}
	}
}

// TestBodiesTheGatewayCannotReadAreRefused: with a key limited to models
// (or model_name), a body Python reads but the gateway does not would take
// a model past the check: JSON in UTF-16 or UTF-32, forms with transport
// padding after a delimiter, a charset, RFC 2231 parameters, or too many
// parts. Each is refused; a method other than POST is held to the key's
// models too, and a request target with a fragment is refused (uvicorn
// drops it: "/v1/load_lora_adapter#x" reached the replica's route).
func TestBodiesTheGatewayCannotReadAreRefused(t *testing.T) {
	backend := newEchoBackend(t)
	utf16 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	part := func(disp, value string) string {
		return "--b0undary\r\nContent-Disposition: " + disp + "\r\n\r\n" + value + "\r\n"
	}
	const ctype = "multipart/form-data; boundary=b0undary"
	many := strings.Repeat(part(`form-data; name="x"`, "1"), maxFormParts) + part(`form-data; name="model"`, "sql-lora") + "--b0undary--\r\n"
	// A key that may use the client-facing name only, as an operator
	// would limit a team to "llama" (not the adapters the replicas serve).
	line, err := auth.Line("lim", "sk-lim", []string{"llama"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	for _, fe := range frontends {
		addr := fe.start(t, newHandler(t, Options{ClientAuth: auth.New(keys)}, "llama", backend.URL))
		for _, tc := range []struct {
			name, method, path, ctype, body string
			status                          int
			code                            string
		}{
			{"UTF-16 JSON", "POST", "/v1/chat/completions", "application/json", utf16(`{"model":"sql-lora"}`), 400, "bad_json"},
			{"UTF-16 JSON with a byte order mark", "POST", "/v1/chat/completions", "application/json", "\xff\xfe" + utf16(`{"model":"sql-lora"}`), 400, "bad_json"},
			{"padding after a delimiter", "POST", "/v1/audio/transcriptions", ctype,
				part(`form-data; name="model"`, "sql-lora") + "--b0undary \r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nllama\r\n--b0undary--\r\n", 400, "bad_form"},
			{"a charset", "POST", "/v1/audio/transcriptions", ctype + "; charset=utf-7", part(`form-data; name="+AG0-odel"`, "sql-lora") + "--b0undary--\r\n", 400, "bad_form"},
			{"an RFC 2231 name", "POST", "/v1/audio/transcriptions", ctype, part(`form-data; name*=iso-8859-1''model`, "sql-lora") + "--b0undary--\r\n", 400, "bad_form"},
			{"an RFC 2231 boundary", "POST", "/v1/audio/transcriptions", ctype + "; boundary*=iso-8859-1''x", part(`form-data; name="model"`, "sql-lora") + "--b0undary--\r\n", 400, "bad_form"},
			{"too many parts", "POST", "/v1/audio/transcriptions", ctype, many, 400, "bad_form"},
			{"PUT naming a model the key may not use", "PUT", "/v1/chat/completions", "application/json", `{"model":"sql-lora"}`, 403, "model_not_allowed"},
			{"a fragment", "POST", "/v1/load_lora_adapter#x", "application/json", `{"lora_name":"a"}`, 400, "bad_request"},
			{"a fragment on the models list", "GET", "/v1/models#x", "", "", 400, "bad_request"},
		} {
			c, br := dialRaw(t, addr)
			hdr := []string{"Authorization: Bearer sk-lim"}
			if tc.ctype != "" {
				hdr = append(hdr, "Content-Type: "+tc.ctype)
			}
			writeRaw(t, c, rawRequest(tc.method, tc.path, hdr, tc.body))
			resp, body := readResp(t, br, tc.method)
			c.Close()
			if resp.StatusCode != tc.status || strings.Contains(body, `"URI"`) {
				t.Errorf("%s %s: status %d, want %d: %.300s", fe.name, tc.name, resp.StatusCode, tc.status, body)
				continue
			}
			checkAPIError(t, body, tc.code)
		}
	}
}
