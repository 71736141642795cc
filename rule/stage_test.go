package rule

import (
	"slices"
	"testing"
)

func TestParseStage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Stage
		wantErr string
	}{
		{in: "awareness", want: Awareness},
		{in: "consideration", want: Consideration},
		{in: "decision", want: Decision},
		{in: "retention", want: Retention},
		{in: "advocacy", want: Advocacy},
		{in: "lead", wantErr: `unknown stage "lead" (valid: awareness, consideration, decision, retention, advocacy)`},
		{in: "Retention", wantErr: `unknown stage "Retention" (valid: awareness, consideration, decision, retention, advocacy)`},
		{in: "", wantErr: `unknown stage "" (valid: awareness, consideration, decision, retention, advocacy)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStage(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseStage(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				if got.Valid() {
					t.Errorf("ParseStage(%q) = %q, want the invalid zero stage", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStage(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
			if !got.Valid() {
				t.Errorf("%q.Valid() = false", got)
			}
		})
	}
}

func TestStagesInJourneyOrder(t *testing.T) {
	t.Parallel()
	want := []Stage{"awareness", "consideration", "decision", "retention", "advocacy"}
	if !slices.Equal(Stages, want) {
		t.Fatalf("Stages = %v, want %v", Stages, want)
	}
}
