// Command gochat sends one chat completion with Go's default HTTP client
// (HTTPS_PROXY from the environment, SSL_CERT_FILE for the roots) and
// prints the answer's body.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	req, err := http.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello from go"}]}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gochat:", err)
		os.Exit(1)
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("OPENAI_API_KEY"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gochat:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "gochat: %s: %s\n", resp.Status, body)
		os.Exit(1)
	}
	os.Stdout.Write(body)
}
