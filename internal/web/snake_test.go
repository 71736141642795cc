package web_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/web"
)

// Every key the API writes is snake_case (data the user named — traits,
// event properties, the values a rule saw — is theirs and left alone).
func TestAPIKeysAreSnakeCase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	// With a sequence and an offer, whose definitions the API shows.
	j, err := journey.Parse("test.yaml", []byte(testJourney+`sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: welcome}
offers:
  - {name: thanks, when: 'ever("page_viewed")', share: 0.5, cooldown: 30d, template: welcome}
sending:
  frequency_cap: {max: 2, per: 7d}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.ApplyJourney(context.Background(), j, false); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	data := []string{"traits", "properties", "observed", "tones"}
	var walk func(path string, v any) []string
	walk = func(path string, v any) (bad []string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snake.MatchString(k) {
					bad = append(bad, path+"."+k)
				}
				if slices.Contains(data, k) {
					if m, ok := x.(map[string]any); ok && k == "tones" {
						for tone, c := range m { // tone names are the user's; their content is not
							bad = append(bad, walk(path+".tones."+tone, c)...)
						}
					}
					continue
				}
				bad = append(bad, walk(path+"."+k, x)...)
			}
		case []any:
			for i, x := range v {
				bad = append(bad, walk(fmt.Sprintf("%s[%d]", path, i), x)...)
			}
		}
		return bad
	}
	id := strconv.FormatInt(f.ann, 10)
	for _, path := range []string{
		"/api/v1/stats", "/api/v1/stats/health", "/api/v1/stats/sequences",
		"/api/v1/contacts", "/api/v1/contacts/" + id, "/api/v1/contacts/" + id + "/timeline", "/api/v1/contacts/" + id + "/export",
		"/api/v1/rules", "/api/v1/rules/visitor", "/api/v1/tones", "/api/v1/templates", "/api/v1/templates/welcome",
		"/api/v1/templates/welcome/preview?contact=" + id, "/api/v1/sequences", "/api/v1/offers", "/api/v1/suppressions",
	} {
		var v any
		if resp := f.call(t, "GET", path, f.key, "", &v); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			continue
		}
		if bad := walk("", v); len(bad) > 0 {
			slices.Sort(bad)
			t.Errorf("GET %s: keys not in snake_case: %v", path, bad)
		}
	}
}
