package store_test

import (
	"go/build"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The domain packages reach storage only through the small interfaces
// they declare: neither they nor anything they import (tests aside)
// imports pgx or this package.
func TestDomainPackagesImportNeitherPgxNorTheStore(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	const module = "github.com/waymark/waymark"
	domain := []string{"rule", "lifecycle", "campaigns", "templates", "mailer", "internal/ingest", "internal/journey",
		"internal/tracking", "internal/auth", "internal/contact", "internal/stats", "internal/export", "internal/bounce", "internal/webhook"}
	for _, d := range domain {
		seen := map[string]bool{}
		var walk func(path string, from []string)
		walk = func(path string, from []string) {
			if seen[path] {
				return
			}
			seen[path] = true
			if strings.HasPrefix(path, "github.com/jackc/pgx") || path == module+"/internal/store" {
				t.Errorf("%s imports %s (through %s)", d, path, strings.Join(from, " → "))
				return
			}
			if !strings.HasPrefix(path, module+"/") {
				return
			}
			p, err := build.Default.ImportDir(filepath.Join(root, strings.TrimPrefix(path, module+"/")), 0)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, imp := range p.Imports {
				walk(imp, append(from[:len(from):len(from)], path))
			}
		}
		walk(module+"/"+d, nil)
	}
}
