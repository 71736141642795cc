package main

import (
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/pgtest"
)

// preview --tone: a tone the journey does not have is refused, a pinned one
// is said to be chosen by the flag; a misspelt template gets a suggestion.
func TestPreviewToneFlagAndSuggestions(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	for _, args := range [][]string{
		{"import", writeFile(t, "contacts.csv", "userId,email,first_name\ndee,dee@example.com,Dee\n")},
		{"apply", "-f", writeFile(t, "journey.yaml", toneJourney)},
	} {
		if _, errOut, err := runWaymark(t, url, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
	}
	_, _, err := runWaymark(t, url, "preview", "thanks", "--contact", "dee", "--tone", "angry")
	if err == nil || !strings.Contains(err.Error(), "--tone angry: not a tone of this journey (celebratory, empathetic, formal, friendly)") {
		t.Errorf("--tone angry: err = %v, want a refusal listing the tones", err)
	}
	_, _, err = runWaymark(t, url, "preview", "thanks", "--contact", "dee", "--tone", "fromal")
	if err == nil || !strings.Contains(err.Error(), `did you mean "formal"?`) {
		t.Errorf("--tone fromal: err = %v, want a suggestion", err)
	}
	out, errOut, err := runWaymark(t, url, "preview", "thanks", "--contact", "dee", "--tone", "formal")
	if err != nil {
		t.Fatalf("--tone formal: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "tone:     formal\nreason:   chosen with --tone; the tone rules would choose friendly (default tone (tone rule 4)") || strings.Contains(out, "sequence step") {
		t.Errorf("--tone formal does not say it was chosen by the flag:\n%s", out)
	}
	_, _, err = runWaymark(t, url, "preview", "thank", "--contact", "dee")
	if err == nil || !strings.Contains(err.Error(), `no template "thank"; did you mean "thanks"?`) {
		t.Errorf("preview thank: err = %v, want a suggestion", err)
	}
}
