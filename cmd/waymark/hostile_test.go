package main

import (
	"bytes"
	"net/http"
	"testing"
)

// postWithKey posts body to base+path with a management API key, as the
// suppression endpoints and the bounce webhook need, and returns the
// status.
func postWithKey(t *testing.T, base, path, key, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
