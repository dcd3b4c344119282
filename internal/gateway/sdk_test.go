package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestOpenAISDK drives the gateway with the official OpenAI Go SDK: list
// models, chat, streamed chat with usage, and a backend error arriving as
// a typed API error.
func TestOpenAISDK(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 5}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := openai.NewClient(option.WithBaseURL(e.traffic+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))

	models, err := client.Models.List(ctx)
	if err != nil {
		t.Fatalf("list models: %v", err)
	}
	if len(models.Data) != 1 || models.Data[0].ID != "llama" {
		t.Errorf("models = %+v, want llama", models.Data)
	}
	if m, err := client.Models.Get(ctx, "llama"); err != nil || m.ID != "llama" {
		t.Errorf("retrieve llama: %+v, %v", m, err)
	}
	var notFound *openai.Error
	if _, err := client.Models.Get(ctx, "model-v1"); !errors.As(err, &notFound) || notFound.StatusCode != 404 || notFound.Code != "model_not_found" {
		t.Errorf("retrieve model-v1 (the pool's id, not listed): %v, want 404 model_not_found", err)
	}

	params := openai.ChatCompletionNewParams{
		Model:    "llama",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is blue-green?")},
	}
	chat, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if want := mockllm.Answer("model-v1", "What is blue-green?", 5); chat.Choices[0].Message.Content != want || chat.Model != "model-v1" {
		t.Errorf("chat = %q from %q, want %q from model-v1", chat.Choices[0].Message.Content, chat.Model, want)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if acc.Choices[0].Message.Content != chat.Choices[0].Message.Content {
		t.Errorf("streamed %q, non-streamed %q", acc.Choices[0].Message.Content, chat.Choices[0].Message.Content)
	}
	if acc.Usage.CompletionTokens != 5 {
		t.Errorf("stream usage = %+v, want 5 completion tokens", acc.Usage)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
	for _, r := range e.pools["blue"] {
		r.mock.SetErrorRate(1)
	}
	_, err = client.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 {
		t.Fatalf("backend failure: got %v, want *openai.Error with status 500", err)
	}
	if apiErr.Message == "" {
		t.Errorf("typed error without message: %+v", apiErr)
	}

	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "not-ours", Messages: params.Messages})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("unknown model: got %v, want 404 model_not_found", err)
	}
}
