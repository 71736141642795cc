// Package docs holds Waymark's product contract (design.md) and the long
// accounts the README points to; this test keeps their links inside the
// repository.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// Every relative link in the README and in docs/*.md names a file of this
// repository, so a clone stands on its own; a link to a heading of a
// Markdown file names a heading that file has.
func TestLinksStayInTheRepository(t *testing.T) {
	t.Parallel()
	link := regexp.MustCompile(`\]\(([^)#\s]*)(#[^)]*)?\)`)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"README.md"}
	for _, p := range pages {
		docs = append(docs, filepath.Join("docs", filepath.Base(p)))
	}
	if len(docs) < 3 {
		t.Fatalf("found %v: the README and docs/*.md", docs)
	}
	for _, doc := range docs {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Join(root, doc)
			if target != "" {
				p = filepath.Join(root, filepath.Dir(doc), target)
			}
			if rel, err := filepath.Rel(root, p); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links to %s, outside the repository", doc, target)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to %s, which is not in the repository", doc, target)
				continue
			}
			if anchor == "" || !strings.HasSuffix(p, ".md") {
				continue
			}
			if !headingAnchors(t, p)[anchor] {
				t.Errorf("%s links to %s#%s: %s has no such heading", doc, target, anchor, filepath.Base(p))
			}
		}
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, punctuation dropped, spaces as hyphens, and
// -1, -2... after a repeated one. Headings inside fenced code are not
// headings.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var a strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		s := a.String()
		if n := seen[s]; n > 0 {
			anchors[s+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	}
	return anchors
}

// The anchors are GitHub's, for the headings that needed care.
func TestHeadingAnchors(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "page.md")
	page := "# Waymark\n\n## What `apply --dry-run` shows\n\n## Export of 1,000,000 contacts\n\n" +
		"## Provider webhooks (bounces, complaints, deliveries)\n\n```\n# not a heading\n```\n\n## Export\n\n## Export\n"
	if err := os.WriteFile(p, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	got := headingAnchors(t, p)
	for _, want := range []string{"waymark", "what-apply---dry-run-shows", "export-of-1000000-contacts",
		"provider-webhooks-bounces-complaints-deliveries", "export", "export-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] || len(got) != 6 {
		t.Errorf("anchors %v, want 6 and no fenced line", got)
	}
}
