package mockllm

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// TestOpenAIClient talks to the simulator with the official Go client, which
// must accept its responses, chunks and errors as OpenAI-compatible.
func TestOpenAIClient(t *testing.T) {
	s, ts := newTestServer(t, Config{Tokens: 8})
	client := openai.NewClient(
		option.WithBaseURL(ts.URL+"/v1/"),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
	)
	ctx := context.Background()
	const prompt = "Say something nice."
	want := Answer(testModel, prompt, 8)
	chat := func(model string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		}
	}

	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, chat(testModel))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != want || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("choices %+v, want content %q", resp.Choices, want)
		}
		if resp.Usage.CompletionTokens != 8 || resp.Usage.PromptTokens != int64(PromptTokens(prompt)) {
			t.Errorf("usage %+v", resp.Usage)
		}
	})

	t.Run("streamed chat with usage", func(t *testing.T) {
		params := chat(testModel)
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		var sb strings.Builder
		chunks := 0
		for stream.Next() {
			chunk := stream.Current()
			chunks++
			if !acc.AddChunk(chunk) {
				t.Fatalf("accumulator rejected chunk %d: %s", chunks, chunk.RawJSON())
			}
			if len(chunk.Choices) > 0 {
				sb.WriteString(chunk.Choices[0].Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if sb.String() != want || acc.Choices[0].Message.Content != want {
			t.Errorf("streamed %q, accumulated %q, want %q", sb.String(), acc.Choices[0].Message.Content, want)
		}
		if chunks != 1+8+1 || acc.Usage.TotalTokens != int64(PromptTokens(prompt)+8) || acc.Choices[0].FinishReason != "stop" {
			t.Errorf("%d chunks, usage %+v, finish %q", chunks, acc.Usage, acc.Choices[0].FinishReason)
		}
	})

	t.Run("completion", func(t *testing.T) {
		resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model:     testModel,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
			MaxTokens: openai.Int(3),
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if resp.Choices[0].Text != Answer(testModel, prompt, 3) || resp.Choices[0].FinishReason != "length" {
			t.Errorf("choices %+v", resp.Choices)
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, chat("gpt-4o"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("error %v (%T), want *openai.Error", err, err)
		}
		if apiErr.StatusCode != http.StatusNotFound || apiErr.Message != "The model `gpt-4o` does not exist." ||
			apiErr.Type != "NotFoundError" || apiErr.Param != "model" {
			t.Errorf("error %d %q type %q param %q", apiErr.StatusCode, apiErr.Message, apiErr.Type, apiErr.Param)
		}
	})

	t.Run("stream error", func(t *testing.T) {
		s.SetStreamErrorRate(1)
		defer s.SetStreamErrorRate(0)
		stream := client.Chat.Completions.NewStreaming(ctx, chat(testModel))
		for stream.Next() {
		}
		var streamErr *ssestream.StreamError
		if err := stream.Err(); !errors.As(err, &streamErr) || !strings.Contains(err.Error(), "InternalServerError") {
			t.Errorf("stream error %v (%T), want an *ssestream.StreamError", err, err)
		}
	})
}
