// Package examples holds the example journey (Fernwood Supply) that users
// copy, embedded so that `waymark demo` can apply it from anywhere.
package examples

import "embed"

// Journey is the file name of the example journey in FS; the HTML parts it
// names are under templates/.
const Journey = "journey.yaml"

// FS holds journey.yaml and templates/.
//
//go:embed journey.yaml templates/*.html
var FS embed.FS
