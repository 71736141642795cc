package journey

import (
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/rule"
)

const broadcastBase = `templates:
  - {name: news, subject: "News for {{.Contact.FirstName}}", text: "Hello."}
  - {name: news-b, subject: "Other news", text: "Hello."}
segments:
  - name: vip
    when: sum("order_completed", "revenue", "365d") >= 500
`

func TestParseSegmentsAndBroadcasts(t *testing.T) {
	t.Parallel()
	src := broadcastBase + `sequences:
  - name: vip-only
    trigger: {enter_stage: retention}
    segment: vip
    steps:
      - {after: 0h, template: news}
broadcasts:
  - name: winter
    audience: {stages: [retention, advocacy], segment: vip}
    template: news
    send_at: "2026-12-10T09:00"
    throttle: 50
    test:
      variants: [news, news-b]
      share: 0.2
      pick_by: clicks
      after: 4h
  - name: monthly
    template: news
    schedule: "0 9 1 * *"
    test:
      variants: [{subject: "A"}, {subject: "B {{.Contact.FirstName}}"}]
      share: 0.5
      pick_by: opens
      after: 2h
      min_results: 3
`
	j, err := Parse("j.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Segments) != 1 || j.Segments[0].Name != "vip" || j.Sequences[0].Segment != "vip" {
		t.Fatalf("segments %+v, sequence segment %q", j.Segments, j.Sequences[0].Segment)
	}
	if len(j.Broadcasts) != 2 {
		t.Fatalf("%d broadcasts", len(j.Broadcasts))
	}
	w := j.Broadcasts[0]
	if w.Audience.Segment != "vip" || len(w.Audience.Stages) != 2 || w.Audience.Stages[1] != rule.Advocacy || w.Throttle != 50 ||
		w.Test == nil || w.Test.Share != 0.2 || w.Test.After != 4*time.Hour || w.Test.Variants[1].Template != "news-b" {
		t.Fatalf("winter %+v", w)
	}
	m := j.Broadcasts[1]
	if m.Audience.String() != "everyone subscribed" || m.Test.MinResults != 3 || m.Test.Variants[1].Subject != "B {{.Contact.FirstName}}" {
		t.Fatalf("monthly %+v", m)
	}
}

func TestParseBroadcastMistakesAtTheirPlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string // every error, "line:col: fragment"
	}{
		{"segment condition", "segments:\n  - name: vip\n    when: sum(\"order_completed\", \"revenue\", \"365x\") >= 500\n",
			[]string{`3:45: segment "vip": when: unknown window "365x"`}},
		{"segment without when", "segments:\n  - name: vip\n", []string{`2:5: segment "vip": missing when`}},
		{"unknown segment of a sequence", broadcastBase + "sequences:\n  - name: s\n    trigger: {event: x}\n    segment: vpi\n    steps:\n      - {after: 0h, template: news}\n",
			[]string{`10:14: sequence "s": no segment "vpi" (defined: vip); did you mean "vip"?`}},
		{"unknown segment of an audience", broadcastBase + "broadcasts:\n  - name: b\n    audience: {segment: lapsed}\n    template: news\n",
			[]string{`9:25: broadcast "b": audience: no segment "lapsed" (defined: vip)`}},
		{"unknown template", broadcastBase + "broadcasts:\n  - name: b\n    template: newz\n",
			[]string{`9:15: broadcast "b": no template "newz"`}},
		{"bad send_at", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    send_at: tomorrow\n",
			[]string{`10:14: broadcast "b": send_at: "tomorrow" is not a time`}},
		{"bad schedule", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    schedule: \"0 25 * * *\"\n",
			[]string{`10:15: broadcast "b": schedule: schedule "0 25 * * *"`}},
		{"both times", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    send_at: \"2026-01-01T09:00\"\n    schedule: \"@daily\"\n",
			[]string{`11:15: broadcast "b": schedule: give send_at (once) or schedule`}},
		{"bad stage", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    audience: {stages: [retension]}\n",
			[]string{`10:25: broadcast "b": audience: stages: `}},
		{"unknown pick_by", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    send_at: \"2026-01-01T09:00\"\n    test:\n      variants: [news, news-b]\n      share: 0.2\n      pick_by: revenue\n      after: 4h\n",
			[]string{`14:16: broadcast "b": pick_by: opens, clicks (people, not machines) or conversions (credited to the variant's email), not "revenue"`}},
		{"share and too many variants", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    test:\n      variants: [news, news-b, {subject: a}, {subject: b}, {subject: c}]\n      share: 1.5\n      pick_by: clicks\n      after: 0h\n",
			[]string{`11:17: broadcast "b": variants: 2 to 4 variants`, `12:14: broadcast "b": share: the part of the audience`, `14:14: broadcast "b": after: the wait before the winner`}},
		{"missing test fields", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    test:\n      variants: [news, news-b]\n",
			[]string{`11:7: broadcast "b": test: missing share`, `11:7: broadcast "b": test: missing pick_by`, `11:7: broadcast "b": test: missing after`}},
		{"subject that does not compile", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    test:\n      variants: [{subject: \"Hi {{.Contact.Nmae}}\"}, {subject: B}]\n      share: 0.5\n      pick_by: opens\n      after: 1h\n",
			[]string{`broadcast "b": test: variant 1: subject: `}},
		{"throttle not a number", broadcastBase + "broadcasts:\n  - name: b\n    template: news\n    throttle: fast\n",
			[]string{`10:15: broadcast "b": throttle must be a number`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantErrors(t, tt.src, tt.want)
		})
	}
}

// A broadcast defined through the API is checked by the same rules.
func TestBroadcastCheckNamesFields(t *testing.T) {
	t.Parallel()
	b := campaigns.Broadcast{Name: "Bad Name", SendAt: "soon", Test: &campaigns.ABTest{Variants: []campaigns.Variant{{Template: "a"}, {Template: "a"}}, Share: 0, PickBy: "revenue"}}
	var fields []string
	for _, e := range b.Check() {
		fields = append(fields, e.Field)
	}
	want := "name template send_at test.variants[1] test.share test.pick_by test.after"
	if strings.Join(fields, " ") != want {
		t.Fatalf("fields %q, want %q", strings.Join(fields, " "), want)
	}
}
