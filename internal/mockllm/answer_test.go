package mockllm

import (
	"strings"
	"testing"
)

func TestAnswer(t *testing.T) {
	tests := []struct {
		name          string
		model, prompt string
		tokens        int
		wantWords     int
	}{
		{"default length", "m", "hello", 16, 16},
		{"one token", "m", "hello", 1, 1},
		{"zero tokens", "m", "hello", 0, 0},
		{"negative tokens", "m", "hello", -2, 0},
		{"empty prompt", "m", "", 5, 5},
		{"unicode model and prompt", "модель/7B", "¿qué tal?\n", 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Answer(tt.model, tt.prompt, tt.tokens)
			if n := len(strings.Fields(got)); n != tt.wantWords || strings.Count(got, " ") != max(tt.wantWords-1, 0) {
				t.Errorf("Answer = %q: %d words, want %d separated by single spaces", got, n, tt.wantWords)
			}
			if again := Answer(tt.model, tt.prompt, tt.tokens); again != got {
				t.Errorf("not deterministic: %q then %q", got, again)
			}
			if longer := Answer(tt.model, tt.prompt, tt.tokens+3); !strings.HasPrefix(longer, got) {
				t.Errorf("%q is not a prefix of the longer answer %q", got, longer)
			}
		})
	}
	if Answer("a", "p", 16) == Answer("b", "p", 16) {
		t.Error("two models give the same answer")
	}
	if Answer("ab", "c", 16) == Answer("a", "bc", 16) {
		t.Error("the model/prompt boundary does not matter")
	}
}

func TestPromptTokens(t *testing.T) {
	tests := []struct {
		prompt string
		want   int
	}{
		{"", 1},
		{"   ", 1},
		{"one", 1},
		{"one two  three\nfour\tfive", 5},
		{" leading and trailing ", 3},
	}
	for _, tt := range tests {
		if got := PromptTokens(tt.prompt); got != tt.want {
			t.Errorf("PromptTokens(%q) = %d, want %d", tt.prompt, got, tt.want)
		}
	}
}

// TestVocabularyIsPlain guards the assumption that words need no escaping.
func TestVocabularyIsPlain(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range vocabulary {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" || seen[w] {
			t.Errorf("word %q is empty, not plain lower-case ASCII, or repeated", w)
		}
		seen[w] = true
	}
}
